#!/usr/bin/python3
"""Lay out what the .deb and the .rpm install around the library, in DESTDIR.

Both packages first put rebuildgate and its bundled libraries into
``/usr/lib/rebuildgate/lib`` (pybuild / pip --target), then run this with
that directory on PYTHONPATH, so the launchers, the apt snippet and the man
pages come from the code being packaged:

* ``/usr/bin/rebuildgate`` and ``/usr/lib/rebuildgate/rebuildgate-apt-method``,
  ``rebuildgate-apt-preinstall``, ``rebuildgate-apt-prompt``, ``rebuildgate-apt-warmup``: Python launchers that put the private
  library first on ``sys.path`` (``-I``: no PYTHONPATH, no user site), so
  no other program ever sees the bundled versions;
* ``/usr/lib/rebuildgate/lib/rebuildgate-bundle.txt``: what is bundled
  (``rebuildgate --version`` and the dnf plugin look for it);
* with ``--apt``: the method ``/usr/lib/apt/methods/rebuildgate`` and its
  ``rebuildgate+http``, ``+https``, ``+file`` links, the pre-install and
  pre-prompt hooks' and the warm-up's launchers, and the apt.conf.d snippet's text (all three) in ``/usr/share/rebuildgate``
  (the maintainer scripts put it in place and take it away: a conffile would
  outlive ``apt-get remove`` and make apt run a hook that is gone);
* ``rebuildgate(1)``, ``rebuildgate-policy(5)`` and the example policy
  (:mod:`manpages`, from argparse and the README).

``layout.py DESTDIR [--apt] [--requirements FILE]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import manpages  # noqa: E402

LIBEXEC = Path("/usr/lib/rebuildgate")
LIB = LIBEXEC / "lib"
PYTHON = "/usr/bin/python3"
SHARE = Path("/usr/share/rebuildgate")
BY = "the rebuildgate package"
ENTRY_POINTS = {
    Path("/usr/bin/rebuildgate"): ("rebuildgate.cli", "the rebuildgate command"),
    LIBEXEC / "rebuildgate-apt-method": ("rebuildgate.apt.entry", "the APT method (run by its launcher)"),
    LIBEXEC / "rebuildgate-apt-preinstall": ("rebuildgate.apt.preinstall", "apt's pre-install hook (run by its launcher)"),
    LIBEXEC / "rebuildgate-apt-prompt": ("rebuildgate.apt.prompt_entry", "apt's pre-prompt hook (run by its launcher)"),
    LIBEXEC / "rebuildgate-apt-warmup": ("rebuildgate.apt.warmup", "apt's warm-up after update (run by its launcher)"),
}


def python_launcher(module: str, what: str, lib: Path = LIB) -> str:
    return (f"#!{PYTHON} -I\n"
            f"# rebuildgate: {what}.  rebuildgate and the libraries it bundles live in\n"
            f"# {lib}, put first on the path of this program only (written by {BY}).\n"
            "import sys\n"
            f"sys.path.insert(0, {str(lib)!r})\n"
            f"from {module} import main\n"
            "sys.exit(main())\n")


def _write(dest: Path, text: str, mode: int = 0o644) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    dest.chmod(mode)


def bundle_manifest(requirements: Path) -> str:
    pins = [line.split()[0] for line in requirements.read_text().splitlines()
            if line and not line[0].isspace() and not line.startswith("#")]
    return ("# rebuildgate's private libraries (packaging/bundle-requirements.txt, installed with\n"
            "# pip --require-hashes); only rebuildgate's programs put this directory on sys.path.\n"
            + "".join(f"{pin}\n" for pin in pins))


def lay_out(destdir: Path, apt: bool, requirements: Path) -> list[Path]:
    from rebuildgate.admin import BUNDLE_MARKER

    made = []
    root = lambda p: destdir / str(p).lstrip("/")  # noqa: E731
    for path, (module, what) in ENTRY_POINTS.items():
        if path.parent == LIBEXEC and not apt:
            continue
        _write(root(path), python_launcher(module, what), 0o755)
        made.append(root(path))
    _write(root(LIB / BUNDLE_MARKER), bundle_manifest(requirements))
    made.append(root(LIB / BUNDLE_MARKER))
    if apt:
        from rebuildgate.apt import install

        methods = root(install.APT_METHODS)
        methods.mkdir(parents=True, exist_ok=True)
        _write(methods / "rebuildgate", install.launcher_script(LIBEXEC / "rebuildgate-apt-method", BY), 0o755)
        for scheme in install.SCHEMES:
            link = methods / f"rebuildgate+{scheme}"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to("rebuildgate")
        hook = install.HOOK_DIR / install.HOOK_NAME
        snippet = install.APT_CONF_DIR / install.SNIPPET_NAME
        prompt = install.HOOK_DIR / install.PROMPT_NAME
        _write(root(hook), install.hook_launcher_script(LIBEXEC / "rebuildgate-apt-preinstall", snippet, BY), 0o755)
        warmup = install.HOOK_DIR / install.WARMUP_NAME
        _write(root(prompt), install.prompt_launcher_script(LIBEXEC / "rebuildgate-apt-prompt", snippet, BY), 0o755)
        _write(root(warmup), install.warmup_launcher_script(LIBEXEC / "rebuildgate-apt-warmup", BY), 0o755)
        _write(root(SHARE / "apt.conf.d" / install.SNIPPET_NAME),
               install.apt_snippet(hook, BY, prompt=prompt, warmup=warmup))
        made += [methods / "rebuildgate", root(hook), root(prompt), root(warmup)]
    man = manpages.write_all(root("/usr/share/man"), root("/usr/share/doc/rebuildgate/examples"))
    return made + man


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destdir", type=Path)
    parser.add_argument("--apt", action="store_true", help="the APT method, hook launcher and snippet (the .deb)")
    parser.add_argument("--requirements", type=Path, default=HERE / "bundle-requirements.txt")
    args = parser.parse_args(argv)
    for path in lay_out(args.destdir, args.apt, args.requirements):
        print(f"layout: {os.path.relpath(path, args.destdir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
