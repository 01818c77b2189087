"""Packages, repositories, rebuilders and policies for the apt tests.

A :class:`World` lives in one directory that apt's sandbox user can read
(see harness.shared_tmpdir).  It builds reproducible debs with the shared
fixtures (tests/support), serves repositories and rebuilders from
:class:`~tests.support.server.RebuilderServer` on 127.0.0.1 (or as file://
directories), signs links the way rebuilders publish them, and writes the
policy TOML.  Used by the tests, ``demo/apt_part.py`` and the benchmark.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tests.support.keys import TestKey, make_key
from tests.support.packages import build_deb, deb_filename, make_apt_archive, make_apt_repo
from tests.support.policy import RebuilderEntry, write_policy
from tests.support.rebuilders import FakeRebuilder
from tests.support.server import RebuilderServer

ServerFactory = Callable[[Path], RebuilderServer]
KeyFactory = Callable[[str], TestKey]


@dataclass
class Package:
    name: str
    version: str
    source: str
    deb: Path

    @property
    def filename(self) -> str:
        return self.deb.name

    @property
    def data(self) -> bytes:
        return self.deb.read_bytes()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def upstream_version(self) -> str:
        return self.version.split(":", 1)[1] if ":" in self.version else self.version


@dataclass
class Repo:
    directory: Path
    server: RebuilderServer | None
    path: str = ""  # where the repository is on its server ("/debian"), "" at the root

    @property
    def http(self) -> str:
        assert self.server is not None
        return self.server.url + self.path + "/"

    @property
    def file(self) -> str:
        return f"file://{self.directory}/"


@dataclass
class World:
    base: Path
    make_server: ServerFactory | None = None
    make_key_for: KeyFactory | None = None
    packages: dict[str, Package] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)

    def _server(self, root: Path, latency: float = 0.0) -> RebuilderServer:
        if self.make_server is None:
            raise RuntimeError("this world has no server factory")
        server = self.make_server(root)
        server.latency = latency
        return server

    def package(self, name: str, version: str = "1.0-1", source: str | None = None,
                payload: bytes | None = None, outdir: str = "debs") -> Package:
        deb = build_deb(self.base / outdir, name, version, source=source,
                        payload=payload if payload is not None else f"{name} {version}\n".encode())
        pkg = Package(name, version, (source or name).split(" (")[0], deb)
        if outdir == "debs":
            self.packages[f"{name}={version}"] = pkg
        return pkg

    def tampered(self, pkg: Package, payload: bytes = b"backdoor\n") -> Package:
        """The same name and version with other bytes (built elsewhere)."""
        return self.package(pkg.name, pkg.version, source=pkg.source if pkg.source != pkg.name else None,
                            payload=payload, outdir="tampered")

    def repo(self, packages: Sequence[Package], name: str = "repo", serve: bool = True, path: str = "") -> Repo:
        """A flat repository, at ``<served root>/<path>`` (the root itself by default)."""
        served = self.base / name
        directory = served / path
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.deb"):
            old.unlink()
        make_apt_repo(directory, [p.deb for p in packages])
        for p in [served, *served.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        return Repo(directory, self._server(served) if serve else None, f"/{path}" if path else "")

    def archive(self, packages: Sequence[Package], name: str = "archive", path: str = "debian",
                suite: str = "bookworm", component: str = "main") -> Repo:
        """An archive in Debian's layout at ``<served root>/<path>``; ``Repo.http`` is its URI."""
        served = self.base / name
        root = make_apt_archive(served / path, [p.deb for p in packages], suite, component)
        for p in [served, *served.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        return Repo(root, self._server(served), f"/{path}" if path else "")

    def rebuilder(self, name: str, serve: bool = True, latency: float = 0.0,
                  key: TestKey | None = None) -> FakeRebuilder:
        """A rebuilder publishing in package-rebuilder layout, over HTTP or as file://."""
        root = self.base / "rebuilders" / name
        root.mkdir(parents=True, exist_ok=True)
        for p in (root.parent, root):
            p.chmod(0o755)
        if key is None:
            key = self.make_key_for(name) if self.make_key_for else make_key(self.base / "keys", "ed25519", name)
        return FakeRebuilder(name, key, root, self._server(root, latency) if serve else None)

    def attested(self, name: str, version: str = "1.0-1", source: str | None = None, *,
                 rebuilders: int = 2) -> tuple[Package, Repo, list[FakeRebuilder]]:
        """One package in a served repository, attested by *rebuilders* honest
        rebuilders rb0, rb1, ... (the set-up most apt tests start from)."""
        pkg = self.package(name, version, source=source)
        repo = self.repo([pkg])
        rbs = [self.rebuilder(f"rb{i}") for i in range(rebuilders)]
        for rb in rbs:
            self.attest(rb, pkg)
        return pkg, repo, rbs

    def attest(self, rb: FakeRebuilder, pkg: Package, digest_of: bytes | None = None, *,
               source: str | None = None, version: str | None = None, product: str | None = None,
               digests: Mapping[str, str] | None = None) -> None:
        """*rb* publishes a signed link for *pkg* where package-rebuilder would.

        By default the link attests the package's own bytes under its pool
        name; *digest_of* attests other bytes (a conflict), *product* another
        file name, *source*/*version* place it under another directory,
        *digests* gives the digest dict verbatim.
        """
        attested = digests if digests is not None else pkg.data if digest_of is None else digest_of
        rb.publish(source or pkg.source, version or pkg.upstream_version, {product or pkg.filename: attested})
        for path in rb.root.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)

    def policy(self, rebuilders: Sequence[FakeRebuilder], threshold: int, *, max_conflicts: int = 0,
               mode: str = "enforce", fetch: Mapping[str, object] | None = None,
               urls: Mapping[str, str] | None = None, name: str = "policy.toml",
               tables: Mapping[str, dict] | None = None, arrays: Mapping[str, Sequence[dict]] | None = None,
               log: Path | None = None, **top: object) -> Path:
        """Write a policy (mode 0600: only root may read it, before the method drops privileges).

        *top* adds top-level keys (``gate_unlisted``...), *tables* / *arrays* sections such as
        ``[halt]`` or ``[[allow]]``."""
        entries = [RebuilderEntry(rb.name, (urls or {}).get(rb.name, rb.url), [rb.key.public_pem])
                   for rb in rebuilders]
        path = write_policy(self.base / name, entries, threshold=threshold, log=log or self.log,
                            fetch={"read_timeout": 3.0, "deadline": 8.0, **(fetch or {})},
                            max_conflicts=max_conflicts, mode=mode, tables=dict(tables or {}),
                            arrays=dict(arrays or {}), **top)
        path.chmod(0o600)
        return path

    @property
    def log(self) -> Path:
        return self.base / "decisions.log"

    def decisions(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


__all__ = ["FakeRebuilder", "Package", "Repo", "World", "deb_filename"]
