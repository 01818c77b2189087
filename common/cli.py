"""The ``rebuildgate`` command.

Exit status: 0 every package accepted (or allowed by the admin's audit mode
or allowlist), 1 any package blocked, 2 a usage, policy or input error.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Sequence

from .errors import ConfigError, PackageError, RebuildgateError, one_line
from .model import Artifact
from .pkginfo import read_package
from .policy import load_policy

EXIT_OK, EXIT_BLOCKED, EXIT_ERROR = 0, 1, 2
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX128 = re.compile(r"^[0-9a-fA-F]{128}$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with one line, as documented
        self.print_usage(sys.stderr)
        print(f"rebuildgate: error: {one_line(message)}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rebuildgate", description="Install a package only if M of N trusted rebuilders attest it.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("verify", help="verify local packages, or one artifact by name and hash")
    v.add_argument("files", nargs="*", type=Path, metavar="FILE", help=".deb or .rpm files")
    v.add_argument("--policy", help="policy file (default $REBUILDGATE_POLICY or /etc/rebuildgate/policy.toml)")
    v.add_argument("--json", action="store_true", help="one JSON object per package")
    v.add_argument("--artifact", metavar="FILENAME", help="file name rebuilders list (with --sha256, no file)")
    v.add_argument("--sha256", metavar="HEX")
    v.add_argument("--sha512", metavar="HEX")
    v.add_argument("--name", help="binary package name")
    v.add_argument("--source", help="source package name (locates evidence)")
    v.add_argument("--version", help="version, with epoch if any")
    v.add_argument("--arch")
    v.add_argument("--repo", help="repository the artifact comes from (matches [[repository]] rules)")

    c = sub.add_parser("check-config", help="validate the policy and say what it means")
    c.add_argument("--policy")
    return p


def _artifact_from_args(args: argparse.Namespace) -> Artifact:
    if not args.sha256 or not _HEX64.match(args.sha256):
        raise PackageError("--artifact needs --sha256 with 64 hex digits")
    if args.sha512 and not _HEX128.match(args.sha512):
        raise PackageError("--sha512 needs 128 hex digits")
    name = Path(args.artifact).name
    if not name or name != args.artifact:
        raise PackageError("--artifact takes a file name, not a path")
    guessed = _guess_from_filename(name)
    return Artifact(
        filename=name, sha256=args.sha256.lower(), sha512=(args.sha512 or "").lower() or None,
        name=args.name or guessed.get("name"), source=args.source or args.name or guessed.get("name"),
        version=args.version or guessed.get("version"), arch=args.arch or guessed.get("arch"), repo=args.repo)


def _guess_from_filename(name: str) -> dict[str, str]:
    """Debian pool names carry name_version_arch; used only when not given."""
    if name.endswith(".deb") and name.count("_") == 2:
        pkg, version, arch = name[:-4].split("_")
        return {"name": pkg, "version": version.replace("%3a", ":").replace("%3A", ":"), "arch": arch}
    return {}


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import Verifier

    if args.artifact and args.files:
        raise PackageError("give either FILEs or --artifact, not both")
    if not args.artifact and not args.files:
        raise PackageError("nothing to verify: give FILEs or --artifact NAME --sha256 HEX")
    artifacts: list[Artifact] = []
    status = EXIT_OK
    if args.artifact:
        artifacts.append(_artifact_from_args(args))
    for path in args.files:
        try:
            artifacts.append(read_package(path, args.repo))
        except PackageError as e:
            print(f"rebuildgate: {e}", file=sys.stderr)
            status = EXIT_ERROR
    policy = load_policy(args.policy)
    with Verifier(policy) as verifier:
        verdicts = verifier.verify_many(artifacts)
    for v in verdicts:
        if args.json:
            print(json.dumps(v.to_json(), sort_keys=True))
        else:
            print(one_line(v.summary(), 2000))
        if not v.allowed and status == EXIT_OK:
            status = EXIT_BLOCKED
    return status


def cmd_check_config(args: argparse.Namespace) -> int:
    from .evidence import load_keyset

    policy = load_policy(args.policy)
    for i, rb in enumerate(policy.rebuilders):
        load_keyset(rb, i, policy.path)
    for line in policy.describe():
        print(line)
    print("policy OK")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "verify":
            return cmd_verify(args)
        return cmd_check_config(args)
    except ConfigError as e:
        print(f"rebuildgate: policy error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except RebuildgateError as e:
        print(f"rebuildgate: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
