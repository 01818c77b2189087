"""Install the method into an APT methods directory.

A Debian package would ship ``/usr/lib/apt/methods/rebuildgate`` (a small
launcher script, see :func:`launcher_script`) and the ``rebuildgate+http``,
``rebuildgate+https`` and ``rebuildgate+file`` symlinks to it; apt runs
``rebuildgate+http`` for ``rebuildgate+http://`` URIs and the method finds
the inner scheme in the name it was run as.  Tests, the
demo and the benchmark build a private methods directory the same way:
links to every method of apt's, plus ours.

``python -m rebuildgate.apt.install DIR [--with-apt-methods]``
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from .entry import KNOWN_CAPABILITIES, PREFIX, capabilities_message

SCHEMES = ("http", "https", "file")
APT_METHODS = Path("/usr/lib/apt/methods")


def method_executable() -> Path:
    """The console script ``rebuildgate-apt-method`` of this installation."""
    here = Path(sys.executable).parent / "rebuildgate-apt-method"
    if here.exists():
        return here
    found = shutil.which("rebuildgate-apt-method")
    if not found:
        raise FileNotFoundError("rebuildgate-apt-method is not installed (pip install -e .)")
    return Path(found)


def install_method(methods_dir: Path, executable: Path | None = None, schemes=SCHEMES) -> list[Path]:
    """Create ``rebuildgate`` -> executable and ``rebuildgate+<scheme>`` -> ``rebuildgate``."""
    methods_dir.mkdir(parents=True, exist_ok=True)
    target = executable or method_executable()
    launcher = methods_dir / "rebuildgate"
    tmp = methods_dir / ".rebuildgate.tmp"  # replaced atomically: apt never finds no method
    tmp.write_text(launcher_script(target))
    tmp.chmod(0o755)
    os.replace(tmp, launcher)
    made = [launcher]
    for name in [f"rebuildgate+{s}" for s in schemes]:
        link = methods_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("rebuildgate")
        made.append(link)
    return made


def launcher_script(target: Path) -> str:
    """``<methods>/rebuildgate``: a shell script that introduces the method, then runs it.

    apt starts every method once only to read its ``100 Capabilities`` and
    then stops it (SIGINT, and waits for it), and once more for the
    downloads.  The script prints the capabilities of the schemes it knows
    at once and runs the Python method as its child: the instance apt stops
    right away costs a fork, not an interpreter start (~40 ms on every
    ``apt-get`` run).  On SIGINT or SIGTERM it stops the method with
    SIGTERM (a clean shutdown once the method is running, a quiet end before
    that) and waits for it.  apt closes the method's pipes before it
    signals, so should the shell run its trap late (dash can defer a signal
    that arrives just before ``wait``), the method still ends as soon as it
    reads the closed pipe (measured over 200 stops: median 1.4 ms, worst
    0.11 s).  A background child of a non-interactive shell reads /dev/null
    (``0<&0`` does not undo that in dash), so apt's pipe is handed over as
    fd 3 first.
    """
    program = shlex.quote(str(target))
    cases = []
    for scheme, fields in KNOWN_CAPABILITIES.items():
        message = capabilities_message(fields).decode("ascii")
        cases.append(f"  {PREFIX}{scheme}) printf '%s' {shlex.quote(message)}; introduced=--introduced ;;\n")
    return (
        "#!/bin/sh\n"
        "# rebuildgate's APT method launcher, written by python -m rebuildgate.apt.install\n"
        "# (see launcher_script there for why it is a shell script).\n"
        # $! (not a variable set after the fork): a stop right after the fork still reaches the child
        "trap 'if [ -n \"$!\" ]; then kill -TERM \"$!\" 2>/dev/null; wait \"$!\" 2>/dev/null; fi; exit 0' INT TERM\n"
        "introduced=\n"
        'case "${0##*/}" in\n'
        + "".join(cases) +
        "esac\n"
        "exec 3<&0\n"
        f'{program} --name "$0" $introduced <&3 3<&- &\n'
        'wait "$!"\n'
        'exit "$?"\n'
    )


def private_methods_dir(methods_dir: Path, executable: Path | None = None) -> Path:
    """A methods dir with links to all of apt's methods plus ours (for a private APT_CONFIG)."""
    methods_dir.mkdir(parents=True, exist_ok=True)
    for method in sorted(APT_METHODS.iterdir()):
        link = methods_dir / method.name
        if not (link.is_symlink() or link.exists()):
            link.symlink_to(method)
    install_method(methods_dir, executable)
    return methods_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebuildgate.apt.install", description=__doc__.splitlines()[0])
    parser.add_argument("methods_dir", type=Path)
    parser.add_argument("--with-apt-methods", action="store_true",
                        help="also link every method of /usr/lib/apt/methods (for a private APT_CONFIG)")
    args = parser.parse_args(argv)
    if args.with_apt_methods:
        private_methods_dir(args.methods_dir)
    else:
        install_method(args.methods_dir)
    print(f"installed rebuildgate methods in {args.methods_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
