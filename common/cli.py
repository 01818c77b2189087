"""The ``rebuildgate`` command.

Exit status: 0 every package accepted (or allowed by the admin's audit mode
or allowlist), 1 any package blocked, 2 a usage, policy or input error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, PackageError, PatternError, RebuildgateError, one_line
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
    from . import admin

    p = _Parser(prog="rebuildgate", description="Install a package only if M of N trusted rebuilders attest it.")
    p.add_argument("--version", action=admin.VersionAction,
                   help="print the versions of rebuildgate and of every library it runs on, and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("verify", help="verify local packages, or one artifact by name and hash")
    v.add_argument("--json", action="store_true", help="one JSON object per package")
    _artifact_args(v)

    from .collectcmd import add_collect_parser

    add_collect_parser(sub)

    c = sub.add_parser("check-config", help="validate the policy and say what it means")
    c.add_argument("--policy")
    c.add_argument("--explain", action="append", default=[], metavar="SOURCE",
                   help="a sources.list entry ('deb URI suite ...'), a deb822 stanza or a repository id: "
                   "say which rule, rebuilders and halts apply to it")

    from .statuscmd import add_status_parser

    add_status_parser(sub)

    h = sub.add_parser("halt", help="halt flags: status, admin overrides, and tools for halt signers")
    hs = h.add_subparsers(dest="halt_command", required=True, parser_class=_Parser)
    st = hs.add_parser("status", help="read the feeds and list the halts in force (exit 1 while installs are "
                                      "blocked by halts or stale feeds)")
    st.add_argument("--policy")
    rf = hs.add_parser("refresh", help="read the halt feeds now and save what they say")
    rf.add_argument("--policy")
    ov = hs.add_parser("override", help="let installs proceed past one halt in force, or past stale feeds "
                                        "(halt-feeds-stale); recorded and logged")
    ov.add_argument("id")
    ov.add_argument("--reason", required=True)
    ov.add_argument("--force", action="store_true", help="record an override for a halt not in force")
    ov.add_argument("--version", type=int, help="with --force: the halt version the override covers")
    ov.add_argument("--policy")
    co = hs.add_parser("clear-override", help="undo an override")
    co.add_argument("id")
    co.add_argument("--policy")
    for name, helptext in (("sign", "write a halt statement signed with your key"),
                           ("lift", "write a lift statement signed with your key")):
        sp = hs.add_parser(name, help=helptext)
        _signer_args(sp)
        sp.add_argument("--id", required=True, help="halt id, e.g. H-2026-001")
        sp.add_argument("--version", type=int, required=True, help="statement version (a lift needs a higher one)")
        sp.add_argument("--reason", required=True)
        sp.add_argument("--expires", required=True,
                        help="ISO 8601 time, or YYYY-MM-DD: the end of that day, 23:59:59Z")
        sp.add_argument("-o", "--output", type=Path, required=True)
        if name == "sign":
            sp.add_argument("--all", action="store_true", help="halt every package")
            sp.add_argument("--package", action="append", default=[], help="fnmatch on binary or source name")
            sp.add_argument("--package-version", action="append", default=[], help="fnmatch on the version")
            sp.add_argument("--repository", action="append", default=[],
                            help="fnmatch on the repository id ('deb.debian.org/debian', a dnf repo id)")
            sp.add_argument("--sha256", action="append", default=[], metavar="HEX",
                            help="exact sha256 of a package file")
    cs = hs.add_parser("cosign", help="add your signature to a statement or feed file, in place")
    _signer_args(cs)
    cs.add_argument("--policy", help="say whether the signatures are from this policy's halt signers")
    cs.add_argument("file", type=Path)
    fd = hs.add_parser("feed", help="write a signed feed holding statements")
    _signer_args(fd)
    fd.add_argument("--version", type=int, required=True, help="feed version: never lower than the last one")
    fd.add_argument("--expires", required=True, help="ISO 8601 time, or YYYY-MM-DD: the end of that day")
    fd.add_argument("-o", "--output", type=Path, required=True)
    fd.add_argument("statements", nargs="*", type=Path)
    admin.add_commands(sub)
    return p


def _artifact_args(v: argparse.ArgumentParser) -> None:
    """FILEs or ``--artifact NAME --sha256 HEX ...``: the packages of ``verify`` and ``collect``."""
    v.add_argument("files", nargs="*", type=Path, metavar="FILE", help=".deb or .rpm files")
    v.add_argument("--policy", help="policy file (default $REBUILDGATE_POLICY or /etc/rebuildgate/policy.toml)")
    v.add_argument("--artifact", metavar="FILENAME", help="file name rebuilders list (with --sha256, no file)")
    v.add_argument("--sha256", metavar="HEX")
    v.add_argument("--sha512", metavar="HEX")
    v.add_argument("--name", help="binary package name")
    v.add_argument("--source", help="source package name (locates evidence)")
    v.add_argument("--version", help="version, with epoch if any")
    v.add_argument("--arch")
    v.add_argument("--repo", help="repository id the artifact comes from, as apt or dnf gives it "
                   "(matches [[repository]] rules; a URI is turned into its id)")


def artifacts_from_args(args: argparse.Namespace) -> tuple[list[Artifact], int]:
    """The packages FILEs or ``--artifact`` name, and EXIT_ERROR if a FILE could not be read."""
    if args.artifact and args.files:
        raise PackageError("give either FILEs or --artifact, not both")
    if not args.artifact and not args.files:
        raise PackageError(f"nothing to {args.command}: give FILEs or --artifact NAME --sha256 HEX")
    artifacts: list[Artifact] = []
    status = EXIT_OK
    if args.artifact:
        artifacts.append(_artifact_from_args(args))
    for path in args.files:
        try:
            artifacts.append(read_package(path, _repo(args.repo)))
        except PackageError as e:
            print(f"rebuildgate: {e}", file=sys.stderr)
            status = EXIT_ERROR
    return artifacts, status


def _signer_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--key", type=Path, help="private key (PEM, unencrypted)")
    group.add_argument("--gpg-key", help="OpenPGP fingerprint of your signing key")
    p.add_argument("--gnupghome", help="GnuPG home holding --gpg-key")


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
        version=args.version or guessed.get("version"), arch=args.arch or guessed.get("arch"),
        repo=_repo(args.repo))


def _repo(text: str | None) -> str | None:
    """``--repo``: the repository id (a URI copied from sources.list becomes its id)."""
    from .repoid import normalize

    return normalize(text) if text else None


def _guess_from_filename(name: str) -> dict[str, str]:
    """Debian pool names carry name_version_arch; used only when not given."""
    if name.endswith(".deb") and name.count("_") == 2:
        pkg, version, arch = name[:-4].split("_")
        return {"name": pkg, "version": version.replace("%3a", ":").replace("%3A", ":"), "arch": arch}
    return {}


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import Verifier

    artifacts, status = artifacts_from_args(args)
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
    unlogged = [v for v in verdicts if v.unlogged]
    if unlogged:
        print(f"rebuildgate: warning: {len(unlogged)} of {len(verdicts)} decision log line(s) were not written: "
              f"{unlogged[0].unlogged}", file=sys.stderr)
    return status


def cmd_check_config(args: argparse.Namespace) -> int:
    from . import explain
    from .evidence import load_keyset

    policy = load_policy(args.policy)
    keys = {rb.name: load_keyset(rb, i, policy.path).describe() for i, rb in enumerate(policy.rebuilders)}
    subjects = [s for text in args.explain for s in explain.subjects(text)]
    halts = explain.saved_halts(policy)
    if not subjects:
        for line in policy.describe(keys):
            print(line)
    for subject in subjects:
        for line in explain.explain(policy, subject, halts):
            print(line)
    for text in policy.warnings:
        print(f"warning: {text}")
    for st in sorted(halts.statements if halts else (), key=lambda s: s.id):
        for text in _halt_pattern_warnings(st):
            print(f"warning: {text} (saved in {halts.path})")
    if halts and halts.problem:
        print(f"warning: {halts.problem}")
    if halts and halts.stale and not subjects:
        print(f"warning: {halts.stale}")
    print("policy OK")
    return EXIT_OK


def _halt_pattern_warnings(statement) -> list[str]:
    """What is wrong with a signed halt's repository patterns, and how they are read meanwhile."""
    from .repoid import intended

    return [f"halt {statement.id} v{statement.version}: repository {finding.message()}; it is read as "
            f"{', '.join(map(repr, intended(finding.pattern)))}" for finding in statement.pattern_findings()]


def cmd_halt(args: argparse.Namespace) -> int:
    from . import halt

    sub = args.halt_command
    if sub in ("sign", "lift", "cosign", "feed"):
        return _halt_tool(args, halt)
    policy = load_policy(args.policy)
    if policy.halt is None:
        print(f"halt flags are not configured: {policy.path} has no [halt] section (README: Halt flags)")
        return EXIT_OK
    from .fetch import make_transport

    watch = halt.HaltWatch(policy.halt, make_transport(policy.fetch), policy.path)
    if sub == "override":
        import getpass

        by = os.environ.get("SUDO_USER") or getpass.getuser()
        entry = watch.set_override(args.id, args.reason, by, args.force, args.version)
        _log_event(policy, {"event": "halt-override", "id": args.id, **entry})
        what = (f"the stale halt feeds (until a feed is read again)" if args.id == halt.STALE_ID
                else f"halt {args.id} v{entry['version']}")
        print(f"{what} overridden by {entry['by']} at {entry['at']}: {entry['reason']}")
        return EXIT_OK
    if sub == "clear-override":
        existed = watch.clear_override(args.id)
        _log_event(policy, {"event": "halt-override-cleared", "id": args.id})
        print(f"override of halt {args.id} {'cleared' if existed else 'was not set'}")
        return EXIT_OK
    watch.refresh()
    for fs in watch.status:
        print(f"feed {fs.url}: {'ok, ' if fs.ok else 'FAILED: '}{fs.message}")
    if sub == "refresh":
        if not any(fs.ok for fs in watch.status):
            print("no halt feed could be read" + (f"; {watch.stale_text()}" if watch.stale_text() else ""))
            return EXIT_BLOCKED
        print("halt state saved" if watch.unsaved is None else f"NOT SAVED: {watch.unsaved}")
        return EXIT_OK if watch.unsaved is None else EXIT_BLOCKED
    return _halt_status(watch, policy, halt)


def _halt_status(watch, policy, halt) -> int:
    """``halt status``: every halt, override and brake; exit 1 while installs are blocked."""
    now = watch._now()
    overrides = watch.state.get("overrides", {})
    in_force = blocking = 0
    for st in sorted(watch.statements.values(), key=lambda s: s.id):
        covers = "everything" if st.everything else "; ".join(
            f"{k} {', '.join(v)}" for k, v in (("packages", st.packages), ("versions", st.versions),
                                               ("repositories", st.repositories), ("sha256", st.sha256)) if v)
        state = "lifted" if st.action == "lift" else "expired" if st.expired(now) else "IN FORCE"
        in_force += state == "IN FORCE"
        line = (f"halt {st.id} v{st.version}: {state}: {st.reason}; covers {covers or '-'}; signed by "
                f"{', '.join(st.signers)}; expires {halt.format_time(st.expires)}; from {st.origin}")
        o = overrides.get(st.id)
        if state == "IN FORCE" and o and halt.override_applies(o, st):
            line += f"; OVERRIDDEN by {halt.describe_override(o)}"
        else:
            blocking += state == "IN FORCE"
        print(line)
        for text in _halt_pattern_warnings(st):
            print(f"  warning: {text}")
    for text in watch.override_report():
        print(text)
    for text in watch.rejected + watch.dropped:
        print(f"not counted: {text}")
    brakes = watch.blocking()
    for text in brakes:
        print(f"BLOCKING EVERY INSTALL: {text}")
    if watch.stale_text() and not brakes:
        o = watch.stale_override()
        print(f"{watch.stale_text()}" + (f"; OVERRIDDEN by {halt.describe_override(o)}" if o else ""))
    print(f"{in_force} halt(s) in force, {blocking} blocking"
          + (f"; every install blocked: {len(brakes)} reason(s) above" if brakes else ""))
    return EXIT_BLOCKED if blocking or brakes else EXIT_OK


def _halt_tool(args: argparse.Namespace, halt) -> int:
    signer = halt.load_signer(args.key, args.gpg_key, args.gnupghome)
    if args.halt_command == "cosign":
        try:
            doc = json.loads(args.file.read_text())
            signed, existing = doc["signed"], doc["signatures"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise halt.HaltError(f"{args.file}: not a signed halt document: {e}") from None
        new = halt.sign_document(signed, signer, existing)
        args.file.write_bytes(new)
        count = len(json.loads(new)["signatures"])
        if args.policy is None:
            print(f"{args.file}: now {count} signature(s) (give --policy P to check them against its halt signers)")
            return EXIT_OK
        return _report_cosign(args, halt, new, signer)
    expires = _expires(args.expires, halt)
    if args.version < 0:
        raise PackageError("--version must not be negative")
    if args.halt_command == "feed":
        payload = halt.feed_payload(args.version, expires, [p.read_bytes() for p in args.statements])
    else:
        everything = getattr(args, "all", False)
        packages, versions = getattr(args, "package", []), getattr(args, "package_version", [])
        repositories, digests = getattr(args, "repository", []), getattr(args, "sha256", [])
        for digest in digests:
            if not _HEX64.fullmatch(digest.lower()):
                raise PackageError(f"--sha256 {digest[:80]!r} is not 64 hex digits")
        if args.halt_command == "sign" and not (everything or packages or versions or repositories or digests):
            raise PackageError("say what the halt covers: --all, --package, --package-version, --repository "
                               "or --sha256")
        _check_halt_repositories(repositories)
        payload = halt.statement_payload(args.id, "halt" if args.halt_command == "sign" else "lift", args.version,
                                         args.reason, expires, packages, versions, repositories, everything,
                                         sha256=digests)
    args.output.write_bytes(halt.sign_document(payload, signer))
    print(f"wrote {args.output}")
    return EXIT_OK


def _check_halt_repositories(patterns: list[str]) -> None:
    """A halt that names its repository in a form no id has would halt nothing
    as written: refuse to sign it (readers would repair it, but say so here)."""
    from .repoid import check_patterns

    for finding in check_patterns(patterns):
        if finding.error:
            raise PatternError(f"--repository {finding.message()}")
        print(f"rebuildgate: warning: --repository {finding.message()}", file=sys.stderr)


def _expires(text: str, halt) -> Any:
    """``--expires``: an ISO 8601 time, or a date meaning the end of that day (UTC); never in the past."""
    import datetime as dt

    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            expires = dt.datetime.combine(dt.date.fromisoformat(text.strip()), dt.time(23, 59, 59),
                                          dt.timezone.utc)
        else:
            expires = halt.parse_time(text, "--expires")
    except (RebuildgateError, ValueError) as e:
        raise PackageError(f"--expires {text!r}: {e}") from None
    if expires <= dt.datetime.now(dt.timezone.utc):
        raise PackageError(f"--expires {halt.format_time(expires)} is in the past: nobody would ever act on it")
    print(f"expires {halt.format_time(expires)}")
    return expires


def _report_cosign(args: argparse.Namespace, halt, document: bytes, signer: Any) -> int:
    """Say whether the new signature is a trusted halt signer's, and how many count."""
    from .evidence import load_keyset, parse_metablock, signers_of

    policy = load_policy(args.policy)
    if policy.halt is None:
        raise ConfigError(policy.path, "halt", "no [halt] section: there are no halt signers to check against")
    keysets = [load_keyset(s, i, policy.path, "halt.signer") for i, s in enumerate(policy.halt.signers)]
    _signed, sigs, data = parse_metablock(document)
    valid = signers_of(sigs, data, keysets)
    mine = [sig for sig in sigs if sig.keyid == signer.public_key.keyid]
    by_me = signers_of(mine, data, keysets) if mine else {}
    print(f"{args.file}: now {halt.signature_count(len(sigs), valid)}; {policy.halt.threshold} required")
    if by_me:
        print(f"the new signature is by trusted halt signer {', '.join(by_me)}")
        return EXIT_OK
    print(f"WARNING: the new signature is not by a halt signer of {policy.path}: it will not count", file=sys.stderr)
    return EXIT_BLOCKED


def _log_event(policy, entry: dict) -> None:
    from .verify import append_log

    error = append_log(policy, entry)
    if error:
        print(f"rebuildgate: warning: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "halt":
            return cmd_halt(args)
        if args.command == "collect":
            from .collectcmd import cmd_collect

            return cmd_collect(args)
        if args.command == "status":
            from .statuscmd import cmd_status

            return cmd_status(args)
        if args.command in ("init", "enable", "disable"):
            from . import admin

            return admin.run(args)
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
