"""The ``rebuildgate status`` subcommand: arguments and exit status.

Exit status: 0 every installed package meets the policy (accepted, or let
through by audit mode or the allowlist), 1 some package would be blocked or
its file is unknown, 2 a usage, policy or package-database error.  A
``--what-if`` is shown, never acted on: the exit status is the policy's.

Imported by :func:`rebuildgate.cli.build_parser`, so only the argument
definitions are at module level; the package manager's modules (python-apt,
dnf) and the verifier are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from .installed import PACKAGE_MANAGERS

EXIT_OK, EXIT_BLOCKED = 0, 1


def add_status_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    s = sub.add_parser("status", help="how much of the installed system the rebuilders attest, and what another "
                       "threshold would block (read-only)")
    s.add_argument("packages", nargs="*", metavar="PACKAGE", help="only these installed packages (name or name:arch)")
    s.add_argument("--policy", help="policy file (default $REBUILDGATE_POLICY or /etc/rebuildgate/policy.toml)")
    s.add_argument("--json", action="store_true", help="one JSON object per package, then one summary object")
    s.add_argument("--what-if", action="append", default=[], metavar="KEY=VALUE,...",
                   help="judge the same evidence again with threshold=N, max_conflicts=N, mode=enforce|audit, "
                   "rebuilders=A+B or without=A+B (repeatable; nothing is fetched again)")
    s.add_argument("--only-problems", action="store_true",
                   help="only packages that would be blocked (in the policy or a what-if); no coverage table")
    s.add_argument("--package-manager", choices=PACKAGE_MANAGERS,
                   help="whose database to read (default: dpkg if ROOT has dpkg's status file, else rpm)")
    s.add_argument("--root", metavar="DIR", help="the system's root: apt's Dir, dnf's --installroot (default /)")
    s.add_argument("--config", metavar="FILE", help="apt configuration file (read as APT_CONFIG is), or dnf.conf")
    s.add_argument("--dbpath", metavar="PATH", help="rpm database path inside the root (rpm's --dbpath)")
    s.add_argument("--setopt", action="append", default=[], metavar="KEY=VALUE",
                   help="dnf main option, applied last as dnf applies --setopt (reposdir, cachedir, releasever...)")


def cmd_status(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from .installed import pick_package_manager, read_installed, select
    from .policy import load_policy
    from .status import check_installed, parse_what_if
    from .statusview import Progress, package_objects, render_text, summary_object

    policy = load_policy(args.policy)
    what_ifs = [parse_what_if(text, policy) for text in args.what_if]
    manager = pick_package_manager(args.root, args.package_manager, args.dbpath)
    progress = Progress(err)
    progress.note(f"reading the installed packages ({manager})")
    selection = read_installed(manager, root=args.root, config=args.config, rpm_dbpath=args.dbpath,
                               setopts=args.setopt)
    packages = select(selection.packages, args.packages)
    located = sum(p.artifact is not None for p in packages)
    progress.note(f"{len(packages)} package(s), {located} with a located file: asking "
                  f"{len(policy.rebuilders)} rebuilder(s)")
    report = check_installed(policy, selection, packages, what_ifs, progress)
    status = EXIT_OK if report.all_meet_policy else EXIT_BLOCKED
    if args.json:
        for obj in package_objects(report, args.only_problems):
            out.write(json.dumps(obj, sort_keys=True) + "\n")
        out.write(json.dumps(summary_object(report, status), sort_keys=True) + "\n")
    else:
        out.write("\n".join(render_text(report, args.only_problems)) + "\n")
    out.flush()
    return status
