"""Install the method into an APT methods directory.

A Debian package would ship ``/usr/lib/apt/methods/rebuildgate`` and the
``rebuildgate+http``, ``rebuildgate+https`` and ``rebuildgate+file``
symlinks to it; apt runs ``rebuildgate+http`` for ``rebuildgate+http://``
URIs and the method finds the inner scheme in its own name.  Tests, the
demo and the benchmark build a private methods directory the same way:
links to every method of apt's, plus ours.

``python -m rebuildgate.apt.install DIR [--with-apt-methods]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

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
    made = []
    for name, points_to in [("rebuildgate", str(target))] + [(f"rebuildgate+{s}", "rebuildgate") for s in schemes]:
        link = methods_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(points_to)
        made.append(link)
    return made


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
