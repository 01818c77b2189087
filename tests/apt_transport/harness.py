"""Run the real ``apt-get`` against a private configuration, hermetically.

Everything apt reads or writes is redirected under one directory through
``APT_CONFIG``: ``Dir::Etc`` (so sources.list, apt.conf.d, trusted keys and
preferences are private, and the host's apt.conf.d is never read),
``Dir::State``, ``Dir::Cache``, ``Dir::Log``, ``Dir::State::status`` and
``Dir::Bin::Methods`` (apt's methods linked, plus ``rebuildgate+*``).  With
``target=True`` dpkg installs into ``<root>/target`` (``--root``), whose
status file apt also uses: a real installation that never touches the
host's package database (:func:`host_state` lets a test prove it).  With
``hook=True`` the pre-install hook is installed as
``python -m rebuildgate.apt.install`` installs it, its snippet in the
private ``Dir::Etc::Parts``, so apt runs it before that dpkg; with
``prompt=True`` the pre-prompt hook too (the same snippet, as installed),
``prompt_program`` standing in for its Python program when a test needs a
crashing one.

The directory is created world-readable (0755) outside pytest's private
temp dir: apt's sandbox user ``_apt`` must reach it, or apt would run its
methods as root instead (with a warning) and the privilege drop could not
be observed.

Used by the apt tests, ``demo/apt_part.py`` and ``bench/apt_bench.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tests.support.process import CommandResult, run_command

REPO_ROOT = Path(__file__).resolve().parents[2]
APT_GET = "/usr/bin/apt-get"
APT_METHODS = Path("/usr/lib/apt/methods")
HOST_DPKG = Path("/var/lib/dpkg")


def shared_tmpdir(prefix: str = "rbg-apt-") -> Path:
    """A fresh directory under /tmp that apt's sandbox user can traverse."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def method_executable() -> Path:
    from rebuildgate.apt.install import method_executable as find

    return find()


def hook_executable() -> Path:
    from rebuildgate.apt.install import hook_executable as find

    return find()


def host_state() -> dict[str, str]:
    """Hashes of the host's dpkg database and apt state a stray run would change."""
    out = {}
    for directory in (Path("/var/cache/apt/archives"), Path("/var/lib/apt/lists"), Path("/var/log/apt"),
                      Path("/etc/apt")):
        if directory.exists():
            listing = sorted(f"{p.relative_to(directory)} {p.stat().st_size if p.is_file() else '-'}"
                             for p in directory.rglob("*") if not p.is_symlink())
            out[str(directory)] = hashlib.sha256("\n".join(listing).encode()).hexdigest()
    for name in ("status", "available", "diversions", "statoverride"):
        path = HOST_DPKG / name
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
    info = HOST_DPKG / "info"
    out["info"] = hashlib.sha256("\n".join(sorted(os.listdir(info))).encode()).hexdigest() if info.exists() else "-"
    return out


AptResult = CommandResult

#: Runs a command in a private mount namespace where /etc/rebuildgate is
#: empty: "no policy file at all" without touching (or depending on) the
#: host's /etc.
WITHOUT_HOST_POLICY = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'if [ -d /etc/rebuildgate ]; then mount -t tmpfs none /etc/rebuildgate || exit 99; fi; '
                       'exec "$@"', "without-host-policy")


class AptEnv:
    """A private apt installation under *root* (created 0755)."""

    def __init__(self, root: Path, options: Mapping[str, str] | None = None, target: bool = False,
                 methods: Path | None = None, hook: bool = False, prompt: bool = False,
                 prompt_program: Path | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.etc = self.root / "etc/apt"
        self.state = self.root / "var/lib/apt"
        self.cache = self.root / "var/cache/apt"
        self.archives = self.cache / "archives"
        self.log = self.root / "var/log/apt"
        self.methods = methods or self.root / "methods"
        self.target = self.root / "target" if target else None
        admindir = (self.target or self.root) / "var/lib/dpkg"
        for d in (self.etc / "apt.conf.d", self.etc / "sources.list.d", self.etc / "preferences.d",
                  self.etc / "trusted.gpg.d", self.state / "lists/partial", self.archives / "partial", self.log,
                  admindir / "info", admindir / "updates", admindir / "triggers"):
            d.mkdir(parents=True, exist_ok=True)
        for f in ("status", "available"):
            (admindir / f).touch()
        self.status = admindir / "status"
        if methods is None:
            from rebuildgate.apt.install import private_methods_dir

            private_methods_dir(self.methods, method_executable())
        self.hook: Path | None = None
        self.prompt: Path | None = None
        if hook or prompt:
            from rebuildgate.apt.install import install_hook, prompt_executable

            made = install_hook(self.root / "hook", self.etc / "apt.conf.d", hook_executable(),
                                prompt_program or prompt_executable(), prompt=prompt)
            self.hook = made[0]
            self.prompt = made[2] if prompt else None
        self.sources([])
        items: dict[str, str | list[str]] = {
            "Dir::Etc": str(self.etc),
            "Dir::State": str(self.state),
            "Dir::State::status": str(self.status),
            "Dir::Cache": str(self.cache),
            "Dir::Log": str(self.log),
            "Dir::Bin::Methods": str(self.methods),
            "Acquire::Languages": "none",
            "APT::Get::Assume-Yes": "true",
            "quiet": "1",
        }
        if self.target is not None:
            items["DPkg::Options::"] = [f"--root={self.target}"]
        for name, value in (options or {}).items():
            items[name] = value
        lines = []
        for name, value in items.items():
            for v in (value if isinstance(value, list) else [value]):
                lines.append(f'{name} "{v}";')
        self.config = self.root / "apt.conf"
        self.config.write_text("\n".join(lines) + "\n")
        for path in self.root.rglob("*"):
            if not path.is_symlink():  # readable by apt's sandbox user; programs stay runnable
                path.chmod(0o755 if path.is_dir() or path.stat().st_mode & 0o100 else 0o644)

    def sources(self, lines: Iterable[str]) -> None:
        (self.etc / "sources.list").write_text("".join(f"{line}\n" for line in lines))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APT_", "REBUILDGATE_", "DEBIAN_"))}
        env.update(APT_CONFIG=str(self.config), LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
        env.pop("http_proxy", None)
        env.pop("https_proxy", None)
        return env

    def run(self, *args: str, options: Mapping[str, str] | None = None, timeout: float = 90,
            env: Mapping[str, str] | None = None, prefix: Sequence[str] = (), program: str = APT_GET) -> AptResult:
        """apt-get *args* (or *program*: ``/usr/bin/apt``); *prefix* runs it through a wrapper
        (:data:`WITHOUT_HOST_POLICY`, ``setpriv`` for another user)."""
        cmd = [*prefix, program]
        for name, value in (options or {}).items():
            cmd += ["-o", f"{name}={value}"]
        cmd += list(args)
        full_env = self.env()
        full_env.update(env or {})
        return run_command(cmd, full_env, timeout)

    def update(self, **kw) -> AptResult:
        return self.run("update", **kw)

    def download(self, *packages: str, **kw) -> AptResult:
        return self.run("install", "--download-only", *packages, **kw)

    def install(self, *packages: str, **kw) -> AptResult:
        return self.run("install", *packages, **kw)

    def downloaded(self) -> list[str]:
        """Package files in the archives (finished downloads), and any left in partial/."""
        return sorted(p.name for p in self.archives.glob("*.deb")) + sorted(
            f"partial/{p.name}" for p in (self.archives / "partial").iterdir())

    def clean(self) -> None:
        for p in self.archives.glob("*.deb"):
            p.unlink()
        for p in (self.archives / "partial").iterdir():
            p.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def flat_source(uri: str, scheme: str = "rebuildgate+") -> str:
    """A sources.list line for a flat, unsigned test repository."""
    return f"deb [trusted=yes] {scheme}{uri} ./"


def policy_opt(path) -> dict[str, str]:
    return {"Rebuildgate::Policy": str(path)}


def fetch(apt: AptEnv, repo_uri: str, policy, *packages: str, scheme: str = "rebuildgate+",
          env: Mapping[str, str] | None = None, **options: str):
    """update + install --download-only through the method (*env* added to apt-get's); returns the install result."""
    apt.sources([flat_source(repo_uri, scheme)])
    opts = {**policy_opt(policy), **options}
    update = apt.update(options=opts, env=env)
    assert update.returncode == 0, update
    return apt.download(*packages, options=opts, env=env)


def blocked_lines(result, name: str) -> list[str]:
    """apt's `E: Failed to fetch` lines for the package *name*."""
    return [line for line in result.output.splitlines() if line.startswith("E: Failed to fetch") and f"/{name}_" in line]
