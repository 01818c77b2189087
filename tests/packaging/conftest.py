"""The packages, built once per session, and throw-away places to install them.

* :func:`packages` runs ``make deb rpm`` into a session directory (the
  bundle's wheels come from the wheel cache ``make wheels`` fills; the pip
  index is asked only when a pinned file is missing there).
* :func:`fresh_root` unpacks a Debian 12 root made by ``mmdebstrap
  --variant=apt bookworm`` from the host's apt sources, cached as a tarball in
  ``$REBUILDGATE_TEST_CACHE`` (default /var/cache/rebuildgate-test) and made
  again when missing.  Commands run in it with ``chroot``, with /proc and
  /dev bound in (and unbound at teardown); it shares the host's network, so
  servers on the host's 127.0.0.1 are reachable from inside.

Nothing here changes the host's own packages or configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("REBUILDGATE_TEST_CACHE", "/var/cache/rebuildgate-test"))
TARBALL = CACHE / "bookworm-apt.tar"
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/root",
              "DEBIAN_FRONTEND": "noninteractive"}


def version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


@dataclass(frozen=True)
class Built:
    deb: Path
    rpm: Path
    plugin_rpm: Path
    seconds: float


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``make deb rpm`` once: the .deb, the .rpm and the plugin's .rpm."""
    import time

    base = tmp_path_factory.mktemp("packages")
    started = time.monotonic()
    proc = subprocess.run(["make", "-C", str(REPO), "deb", "rpm", f"DIST={base / 'dist'}",
                           f"BUILD={base / 'build'}"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **{k: SYSTEM_ENV[k] for k in ("LANG", "LC_ALL")}})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    dist = base / "dist"
    v = version()
    return Built(dist / f"rebuildgate_{v}_amd64.deb", dist / f"rebuildgate-{v}-1.x86_64.rpm",
                 dist / f"python3-dnf-plugin-rebuildgate-{v}-1.noarch.rpm", time.monotonic() - started)


def _tarball() -> Path:
    """The cached fresh root; made (atomically) when missing."""
    if TARBALL.is_file():
        return TARBALL
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / f".{TARBALL.name}.{os.getpid()}"
    proc = subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", "--format=tar", "bookworm", str(partial)],
                          capture_output=True, text=True, timeout=900, env=SYSTEM_ENV)
    assert proc.returncode == 0, proc.stderr[-4000:]
    os.replace(partial, TARBALL)
    return TARBALL


@dataclass
class Root:
    """A Debian 12 root on disk; :meth:`run` runs a command in it as root."""

    path: Path

    def run(self, *argv: str, check: bool = False, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(["chroot", str(self.path), *argv], capture_output=True, text=True,
                              timeout=timeout, env={**SYSTEM_ENV, **(env or {})})
        if check:
            assert proc.returncode == 0, f"$ {' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script, **kw)

    def put(self, source: Path, inside: str) -> str:
        """Copy a host file into the root; returns its path as seen inside."""
        target = self.path / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return inside

    def file(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")


def _mount(root: Path) -> list[Path]:
    mounted = []
    for what, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--bind", "/dev"]),
                       ("dev/pts", ["--bind", "/dev/pts"])):
        point = root / what
        point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(point)], check=True, timeout=30)
        mounted.append(point)
    return mounted


@pytest.fixture(scope="module")
def fresh_root() -> Iterator[Root]:
    """A fresh Debian 12 root (unpacked from the cached tarball) for one test module."""
    base = Path(tempfile.mkdtemp(prefix="rbg-root-", dir="/var/tmp"))
    base.chmod(0o755)
    subprocess.run(["tar", "-C", str(base), "-xf", str(_tarball())], check=True, timeout=300)
    shutil.copy2("/etc/resolv.conf", base / "etc" / "resolv.conf")  # the Debian mirror, by name
    mounted = _mount(base)
    try:
        yield Root(base)
    finally:
        for point in reversed(mounted):
            if subprocess.run(["umount", str(point)], timeout=30).returncode != 0:
                subprocess.run(["umount", "--lazy", str(point)], timeout=30)
        # Never remove a tree that still has the host's /dev or /proc in it.
        if not any(os.path.ismount(point) for point in mounted):
            shutil.rmtree(base, ignore_errors=True)


def lines_with(text: str, needle: str) -> Sequence[str]:
    return [line for line in text.splitlines() if needle in line]
