"""Run the real ``/usr/bin/dnf`` with the rebuildgate plugin, hermetically.

Everything dnf reads or writes is redirected into a temporary directory:
its configuration (``-c``), repositories, plugin and plugin configuration
directories, cache, logs and the ``--installroot`` (rpmdb and history).  The
host's /etc/dnf, rpmdb and dnf cache are never touched, and
:func:`host_state` lets a test prove it.

Used by the dnf tests, ``demo/dnf_part.py`` and ``bench/dnf_bench.py``, so it
imports nothing from rebuildgate (dnf's Python is not the venv's anyway).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tests.support.process import CommandResult, run_command

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = REPO_ROOT / "dnf_plugin" / "plugin.py"
DNF = "/usr/bin/dnf"
#: site-packages of the interpreter running the tests: the venv with the
#: editable rebuildgate and in-toto>=3 (what library_path must point at).
VENV_SITE = sysconfig.get_paths()["purelib"]
RELEASEVER = "40"
RPMDB = "/var/lib/rpm"  # inside the installroot

#: Host paths dnf and rpm would use without the sandbox (Debian's rpm keeps
#: its database in /root/.rpmdb; Fedora's in /var/lib/rpm).
HOST_PATHS = (Path("/root/.rpmdb"), Path("/var/lib/rpm"), Path("/var/lib/dnf"),
              Path("/var/cache/dnf"), Path("/etc/dnf"), Path("/etc/rebuildgate"))


DnfResult = CommandResult


@dataclass
class DnfSandbox:
    """A throw-away dnf: one installroot, one cache, this plugin, these repos.

    ``plugin=False`` runs dnf with no plugin at all (the baseline the
    benchmark compares against).  ``library_path=None`` leaves the key out of
    rebuildgate.conf; the default is the test venv's site-packages.
    """

    base: Path
    repos: Mapping[str, str]  # repo id -> baseurl
    policy: Path | None = None
    library_path: str | None = VENV_SITE
    plugin: bool = True
    plugin_conf_extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.root = self.base / "installroot"
        self.cache = self.base / "cache"
        self.logs = self.base / "log"
        self.reposdir = self.base / "repos.d"
        self.plugins = self.base / "plugins"
        self.pluginconf = self.base / "plugins.conf.d"
        self.conf = self.base / "dnf.conf"
        for d in (self.root, self.cache, self.logs, self.reposdir, self.plugins, self.pluginconf):
            d.mkdir(parents=True, exist_ok=True)
        # Debian's rpm puts its database in ~/.rpmdb (HOME-dependent); pin it
        # to Fedora's place inside the installroot for dnf and for queries.
        (self.base / ".rpmmacros").write_text(f"%_dbpath {RPMDB}\n")
        self.conf.write_text("[main]\ngpgcheck=0\nkeepcache=0\ninstall_weak_deps=0\n"
                             "installonly_limit=3\nbest=1\nskip_if_unavailable=0\n")
        self.write_repos(self.repos)
        if self.plugin:
            target = self.plugins / "rebuildgate.py"
            if not target.exists():
                target.symlink_to(PLUGIN_SOURCE)
        self.write_plugin_conf()

    def write_repos(self, repos: Mapping[str, str]) -> None:
        """One .repo file per repository; no proxy (a test may give dnf one for evidence)."""
        self.repos = dict(repos)
        for old in self.reposdir.glob("*.repo"):
            old.unlink()
        for repo_id, url in self.repos.items():
            (self.reposdir / f"{repo_id}.repo").write_text(
                f"[{repo_id}]\nname={repo_id}\nbaseurl={url}\ngpgcheck=0\nproxy=_none_\n"
                "metadata_expire=0\n")

    def write_plugin_conf(self) -> None:
        lines = ["[main]", "enabled=1"]
        if self.policy is not None:
            lines.append(f"policy={self.policy}")
        if self.library_path is not None:
            lines.append(f"library_path={self.library_path}")
        lines += [f"{k}={v}" for k, v in self.plugin_conf_extra.items()]
        (self.pluginconf / "rebuildgate.conf").write_text("\n".join(lines) + "\n")

    def command(self, *args: str, setopts: Sequence[str] = ()) -> list[str]:
        return [
            DNF, "-y", "-c", str(self.conf), f"--installroot={self.root}",
            f"--releasever={RELEASEVER}",
            f"--setopt=reposdir={self.reposdir}",
            f"--setopt=pluginpath={self.plugins}",
            f"--setopt=pluginconfpath={self.pluginconf}",
            f"--setopt=cachedir={self.cache}",
            f"--setopt=logdir={self.logs}",
            *(f"--setopt={s}" for s in setopts),
            *args,
        ]

    def run(self, *args: str, setopts: Sequence[str] = (), env: Mapping[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 90, wrapper: Sequence[str] = ()) -> DnfResult:
        """Run dnf with a clean environment (no PYTHONPATH, no REBUILDGATE_POLICY).

        *wrapper* goes in front of the command (``unshare --net --``: a dnf
        with no network at all, as Qubes dom0).
        """
        cmd = [*wrapper, *self.command(*args, setopts=setopts)]
        clean = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                 "HOME": str(self.base), "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        clean.update(env or {})
        return run_command(cmd, clean, timeout, cwd=str(cwd or self.base))

    def installed(self) -> set[str]:
        """NEVRAs in the installroot's rpmdb (``name-[epoch:]version-release.arch``)."""
        proc = subprocess.run(["rpm", "--root", str(self.root), "--dbpath", RPMDB, "-qa",
                               "--qf", "%{NEVRA}\n"], capture_output=True, text=True, timeout=30,
                              check=True, env={**os.environ, "HOME": str(self.base)})
        return set(proc.stdout.split())

    def cached_rpms(self) -> list[Path]:
        """Package files in the sandbox's dnf cache (downloads land here first)."""
        return sorted(self.cache.rglob("*.rpm"))


def rpm_requests(requests: Iterable[str]) -> list[str]:
    """The package downloads in a server's request log."""
    return [r for r in requests if r.split("?", 1)[0].endswith(".rpm")]


def host_state(paths: Sequence[Path] = HOST_PATHS) -> dict[str, object]:
    """A fingerprint of the host's package state: size, mtime and sha256 of
    every file under *paths*; equal before and after means untouched.

    SQLite's shared-memory index (``*-shm``) changes whenever anyone merely
    reads a database (``rpm -qa`` does), so only its existence counts; the
    data lives in the database file and its write-ahead log.
    """
    state: dict[str, object] = {}
    for top in paths:
        if not top.exists():
            state[str(top)] = "absent"
            continue
        for p in sorted([top, *top.rglob("*")]):
            if p.is_file() and not p.is_symlink():
                if p.name.endswith("-shm"):
                    state[str(p)] = "exists"
                    continue
                st = p.stat()
                state[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            elif p.is_dir():
                state[str(p)] = "dir"
    return state


def hide_rebuildgate(directory: Path) -> dict[str, str]:
    """Environment that makes ``import rebuildgate`` fail in dnf's Python.

    A ``sitecustomize`` on PYTHONPATH puts a finder first that refuses the
    package, as if it were not installed anywhere - so the "missing library"
    test means the same on a machine where rebuildgate is installed system-wide.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'rebuildgate' or name.startswith('rebuildgate.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Hide())\n")
    return {"PYTHONPATH": str(directory)}


def old_intoto_on_path(directory: Path) -> dict[str, str]:
    """Environment that puts stand-ins for Debian's in-toto 1.3.1 and
    securesystemslib 0.26 ahead of everything but library_path, as
    /usr/lib/python3/dist-packages would on a machine with them installed.
    Importing anything from them fails, so a verdict can only come from the
    venv's real ones."""
    for name, version in (("in_toto", "1.3.1"), ("securesystemslib", "0.26.0")):
        pkg = directory / name
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(
            f"__version__ = {version!r}\n"
            f"raise ImportError('stand-in for Debian {name} {version}: must not be imported')\n")
    return {"PYTHONPATH": str(directory)}
