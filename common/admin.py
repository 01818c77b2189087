"""The commands that set rebuildgate up: ``init``, ``enable``, ``disable``, ``--version``.

``rebuildgate init`` writes a policy from flags (or answers), checks that it
loads with every key, and only then puts it in place.  ``enable`` /
``disable`` switch apt sources (:mod:`rebuildgate.aptsources_edit`);
``enable`` first loads the policy and its keys, and checks that the method
is installed, so that no source is ever switched to a gate that cannot work.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TextIO

from . import __version__
from .errors import ConfigError, RebuildgateError

EXIT_OK, EXIT_ERROR = 0, 2
COMMANDS = ("init", "enable", "disable")
#: Libraries rebuildgate imports beyond the standard library and the system's python-apt / rpm / dnf.
LIBRARIES = ("securesystemslib", "cryptography", "cffi", "pycparser", "python-gnupg")
#: The file that marks a private bundle directory (written by packaging/layout.py).
BUNDLE_MARKER = "rebuildgate-bundle.txt"
LAYOUTS = ("package-rebuilder", "rebuilderd", "template")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class InitError(RebuildgateError):
    """init wrote nothing (exit 2)."""


# -- rebuildgate --version -------------------------------------------------

def bundle_dir() -> Path | None:
    """The private directory this rebuildgate was loaded from, if it is a packaged bundle."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / BUNDLE_MARKER).is_file() else None


def version_lines() -> list[str]:
    """rebuildgate's version, then every library it runs on and where each comes from."""
    from importlib import metadata

    bundle = bundle_dir()
    lines = [f"rebuildgate {__version__} ({Path(__file__).resolve().parent})"]
    if bundle is not None:
        lines.append(f"bundled in {bundle} (first on sys.path of rebuildgate's programs only):")
        for dist in sorted(metadata.distributions(path=[str(bundle)]), key=lambda d: d.metadata["Name"].lower()):
            if dist.metadata["Name"].lower() != "rebuildgate":
                lines.append(f"  {dist.metadata['Name']} {dist.version}")
    else:
        lines.append("libraries (from this Python's environment):")
        for name in LIBRARIES:
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                lines.append(f"  {name}: not installed")
                continue
            lines.append(f"  {name} {dist.version} ({dist.locate_file('')})")
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        lines.append(f"cryptography uses {backend.openssl_version_text()}")
    except Exception as e:  # noqa: BLE001 - --version reports, never fails
        lines.append(f"cryptography: cannot be imported: {e}")
    for label, module, attr in (("python-apt", "apt_pkg", "VERSION"), ("rpm", "rpm", "__version__")):
        try:
            mod = __import__(module)
            lines.append(f"{label} {getattr(mod, attr, '?')} (system)")
        except ImportError:
            lines.append(f"{label}: not installed (needed for {'.deb' if module == 'apt_pkg' else '.rpm'} files)")
    lines.append(f"Python {sys.version.split()[0]} ({sys.executable})")
    return lines


class VersionAction(argparse.Action):
    """``--version``: computed only when asked (it imports cryptography)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        print("\n".join(version_lines()))
        parser.exit(EXIT_OK)


# -- the parsers -------------------------------------------------------------

def add_commands(sub) -> None:  # noqa: ANN001 - argparse's _SubParsersAction
    """Register ``init``, ``enable`` and ``disable`` on the ``rebuildgate`` parser."""
    i = sub.add_parser("init", help="write a policy from flags or answers, check it, say what it trusts")
    i.add_argument("--policy", help="where to write it (default $REBUILDGATE_POLICY or /etc/rebuildgate/policy.toml)")
    i.add_argument("--rebuilder", nargs=3, action="append", default=[], metavar=("NAME", "URL", "KEYFILE"),
                   help="a rebuilder: its name, base URL (https://, http:// or file://) and public key file; "
                        "repeat for each; the key is copied to keys/ beside the policy")
    i.add_argument("--layout", action="append", default=[], metavar="NAME=LAYOUT",
                   help=f"how rebuilder NAME publishes: {', '.join(LAYOUTS[:2])} (default {LAYOUTS[0]})")
    i.add_argument("--threshold", type=int, help="M: rebuilders that must agree (default: 2, or 1 with one rebuilder)")
    i.add_argument("--mode", choices=("enforce", "audit"), default=None, help="enforce (default) or audit")
    i.add_argument("--interactive", action="store_true",
                   help="ask for what the flags do not give (the default when no --rebuilder is given on a terminal)")
    i.add_argument("--force", action="store_true", help="replace an existing policy")
    for name, enable in (("enable", True), ("disable", False)):
        verb = "switch" if enable else "switch back"
        s = sub.add_parser(name, help=f"{verb} apt sources {'to' if enable else 'from'} rebuildgate+ "
                                      f"(sources.list and .sources files)")
        s.add_argument("patterns", nargs="*", metavar="SOURCE",
                       help="repository ids or URIs of the entries (fnmatch patterns, e.g. 'deb.debian.org/*')")
        s.add_argument("--all", action="store_true", help="every entry")
        s.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
        s.add_argument("--root", type=Path, default=Path("/"), help="apt's files are under this root (default /)")
        s.add_argument("--sourcelist", type=Path, help="Dir::Etc::sourcelist (default ROOT/etc/apt/sources.list)")
        s.add_argument("--sourceparts", type=Path,
                       help="Dir::Etc::sourceparts (default ROOT/etc/apt/sources.list.d)")
        if enable:
            s.add_argument("--policy", help="policy that must load first (default $REBUILDGATE_POLICY or "
                                            "ROOT/etc/rebuildgate/policy.toml)")
            s.add_argument("--methods-dir", type=Path,
                           help="Dir::Bin::Methods, where the method must be (default ROOT/usr/lib/apt/methods)")


def run(args: argparse.Namespace) -> int:
    if args.command == "init":
        return cmd_init(args)
    return cmd_switch(args)


# -- enable / disable --------------------------------------------------------

def cmd_switch(args: argparse.Namespace) -> int:
    from . import aptsources_edit as edit

    enable = args.command == "enable"
    layout = edit.Layout(args.root, args.sourcelist, args.sourceparts, getattr(args, "methods_dir", None))
    if args.all and args.patterns:
        raise edit.SwitchError("give SOURCE patterns or --all, not both")
    if enable:
        _check_policy(_root_policy(args.policy, args.root))
        edit.check_method(layout)
    edits = edit.plan(layout, enable, args.patterns, args.all)
    for pattern in edit.unmatched(edits, args.patterns):
        print(f"rebuildgate: warning: no entry matches {pattern!r}", file=sys.stderr)
    for entry in (e for f in edits for e in f.entries):
        print(("would be " if args.dry_run and entry.status == "switched" else "") + entry.describe())
    if args.dry_run:
        for f in edits:
            if f.changed:
                sys.stdout.write(f.diff())
        print("dry run: nothing was changed")
        return EXIT_OK
    backup = edit.apply(edits, layout)
    if backup is None:
        print("nothing to change")
    else:
        print(f"the old files are saved in {backup}")
        print("run apt-get update (or apt update) to read the sources again")
    return EXIT_OK


def _root_policy(policy: str | None, root: Path) -> str | None:
    if policy or os.environ.get("REBUILDGATE_POLICY") or root == Path("/"):
        return policy
    return str(root / "etc/rebuildgate/policy.toml")


def _check_policy(path: str | None) -> list[str]:
    """Load the policy and every key (as check-config does); raise ConfigError if it does not."""
    from .evidence import load_keyset
    from .policy import load_policy

    policy = load_policy(path)
    keys = {rb.name: load_keyset(rb, i, policy.path).describe() for i, rb in enumerate(policy.rebuilders)}
    return policy.describe(keys) + [f"warning: {text}" for text in policy.warnings]


# -- init ------------------------------------------------------------------------

def cmd_init(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    from .policy import policy_path

    target = policy_path(args.policy)
    if target.exists() and not args.force:
        raise InitError(f"{target} exists; give --force to replace it (the old one is kept as {target.name}.old)")
    stdin = stdin or sys.stdin
    rebuilders = [tuple(r) for r in args.rebuilder]
    layouts = dict(_split_layout(text) for text in args.layout)
    threshold, mode = args.threshold, args.mode
    interactive = args.interactive or (not rebuilders and stdin.isatty())
    if interactive:
        rebuilders, threshold, mode = _interview(rebuilders, threshold, mode, stdin, layouts)
    if not rebuilders:
        raise InitError("no rebuilder: give --rebuilder NAME URL KEYFILE (once per rebuilder), or --interactive")
    if threshold is None:
        threshold = min(2, len(rebuilders))
    text, keys = render(rebuilders, threshold, mode or "enforce", layouts)
    described = _install(target, text, keys)
    for line in described:
        print(line)
    print(f"wrote {target}; next: rebuildgate enable SOURCE... (or --all), then apt-get update")
    return EXIT_OK


def _split_layout(text: str) -> tuple[str, str]:
    name, sep, layout = text.partition("=")
    if not sep or layout not in LAYOUTS[:2]:
        raise InitError(f"--layout {text!r}: give NAME={LAYOUTS[0]} or NAME={LAYOUTS[1]}")
    return name, layout


def _interview(rebuilders: list[tuple[str, str, str]], threshold: int | None, mode: str | None, stdin: TextIO,
               layouts: dict[str, str]) -> tuple[list[tuple[str, str, str]], int, str]:
    def ask(question: str, default: str = "") -> str:
        sys.stdout.write(f"{question}{f' [{default}]' if default else ''}: ")
        sys.stdout.flush()
        answer = stdin.readline()
        if not answer:
            raise InitError("no answer (end of input); nothing was written")
        return answer.strip() or default

    rebuilders = list(rebuilders)
    while True:
        if rebuilders and ask("another rebuilder? (y/n)", "n").lower() not in ("y", "yes"):
            break
        n = len(rebuilders) + 1
        name = ask(f"rebuilder {n}: name", f"rb{n}")
        url = ask(f"rebuilder {name}: base URL (https://..., or file:///... for evidence copied in)")
        key = ask(f"rebuilder {name}: public key file")
        layout = ask(f"rebuilder {name}: layout ({' or '.join(LAYOUTS[:2])})", LAYOUTS[0])
        if layout not in LAYOUTS[:2]:
            raise InitError(f"layout {layout!r}: give {' or '.join(LAYOUTS[:2])}")
        layouts[name] = layout
        rebuilders.append((name, url, key))
    if threshold is None:
        answer = ask(f"how many of the {len(rebuilders)} must agree (threshold)", str(min(2, len(rebuilders))))
        if not answer.isdigit():
            raise InitError(f"threshold {answer!r} is not a number")
        threshold = int(answer)
    if mode is None:
        mode = ask("mode (enforce: block; audit: only log what would be blocked)", "enforce")
        if mode not in ("enforce", "audit"):
            raise InitError(f"mode {mode!r}: give enforce or audit")
    return rebuilders, threshold, mode


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string


def render(rebuilders: list[tuple[str, str, str]], threshold: int, mode: str,
           layouts: dict[str, str]) -> tuple[str, dict[str, Path]]:
    """The policy text, and the key files to copy (name under keys/ -> source)."""
    names = [r[0] for r in rebuilders]
    for name in names:
        if not _NAME.match(name):
            raise InitError(f"rebuilder name {name!r}: use letters, digits and ._- only")
    if len(set(names)) != len(names):
        raise InitError("two rebuilders have the same name")
    for name in layouts:
        if name not in names:
            raise InitError(f"--layout {name}=...: there is no rebuilder {name!r}")
    keys: dict[str, Path] = {}
    out = [
        f"# rebuildgate policy, written by `rebuildgate init` on {_dt.date.today().isoformat()}.",
        "# Every key is explained in rebuildgate-policy(5) and in the commented example",
        "# /usr/share/doc/rebuildgate/examples/policy.toml; check a change with `rebuildgate check-config`.",
        "",
        f"threshold = {threshold}          # rebuilders (operators) that must attest the exact file",
        "max_conflicts = 0      # signed links giving the file another hash that are tolerated",
        f"mode = {_toml(mode)}" + ("     # audit: log what would be blocked, block nothing" if mode == "audit" else ""),
        "gate_unlisted = true   # sources enabled with `rebuildgate enable`, and local files, are checked",
        "",
    ]
    for name, url, key in rebuilders:
        source = Path(key)
        if not source.is_file():
            raise InitError(f"rebuilder {name}: key file {key} is not a readable file")
        stored = f"{name}{source.suffix or '.pem'}"
        keys[stored] = source
        out += ["[[rebuilder]]", f"name = {_toml(name)}", f"url = {_toml(url)}",
                f"layout = {_toml(layouts.get(name, LAYOUTS[0]))}",
                f"keys = [{_toml('keys/' + stored)}]   # relative to this file", ""]
    return "\n".join(out), keys


def _install(target: Path, text: str, keys: dict[str, Path]) -> list[str]:
    """Write the policy and keys beside a temporary name, check them, then move them in place."""
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    keydir = directory / "keys"
    keydir.mkdir(exist_ok=True, mode=0o755)
    written: list[Path] = []
    draft = directory / f".{target.name}.init"
    try:
        for stored, source in keys.items():
            dest = keydir / stored
            if dest.exists() and dest.read_bytes() != source.read_bytes() and not target.exists():
                raise InitError(f"{dest} exists with other content; move it away first")
            if not dest.exists() or dest.read_bytes() != source.read_bytes():
                shutil.copyfile(source, dest)
                dest.chmod(0o644)
                written.append(dest)
        draft.write_text(text)
        draft.chmod(0o644)
        try:
            described = _check_policy(str(draft))
        except ConfigError as e:
            raise InitError(f"the policy does not load, nothing was installed: {e}") from None
        if target.exists():
            shutil.copy2(target, target.with_name(target.name + ".old"))
        os.replace(draft, target)
    except BaseException:
        for path in [draft, *written]:
            try:
                path.unlink()
            except OSError:
                pass
        raise
    return [line.replace(str(draft), str(target)) for line in described]
