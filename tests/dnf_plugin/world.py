"""The packages, repositories and rebuilders the dnf tests install from.

Built once per session (rpmbuild is the slow part): every scenario is one
package name, so tests share one world and differ only in the policy and
the command.  Three HTTP rebuilders rb1..rb3 publish in package-rebuilder
layout; one HTTP server serves the repositories (not "main": dnf reserves that
section name for its own configuration, and a repository called so is ignored):

=========  ===========  ============================================================
repo       package      evidence
=========  ===========  ============================================================
gated      hello        rb1, rb2, rb3 attest it
gated      evil         all three attest the honest build; the repository holds a
                        tampered build with regenerated metadata
gated      lonely       rb1 only
gated      disputed     rb1, rb2 attest it; rb3 signs a different hash (a conflict)
gated      epochal      epoch 3; published under ``epochal/1.0-1`` (no epoch)
gated      libsplit     built from source ``splitsrc``; published only under it
gated      up           1.0-1 and 1.1-1 attested by all; 1.2-1 by nobody
extras     free         nobody; the policy does not gate ``extras``
legacy     oldsum       all attest, but the metadata has sha1 checksums only
modern     newsum       all attest; the metadata has sha512 checksums only
(files)    localok      all attest; installed as ``dnf install ./localok-...rpm``
(files)    localbad     nobody
=========  ===========  ============================================================
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tests.dnf_plugin.harness import DnfSandbox
from tests.support.packages import build_rpm, make_rpm_repo
from tests.support.policy import write_policy
from tests.support.rebuilders import FakeRebuilder, make_rebuilders
from tests.support.server import RebuilderServer, ServerSet


@dataclass(frozen=True)
class Spec:
    """One package to build: where it goes and who attests it."""

    key: str
    name: str
    version: str = "1.0"
    release: str = "1"
    epoch: int | None = None
    source: str | None = None
    repo: str | None = "gated"  # None: a local file only
    attested_by: tuple[str, ...] = ("rb1", "rb2", "rb3")
    dissent_by: tuple[str, ...] = ()  # sign a different hash for the same file name
    tampered: bool = False  # the repository gets a different build than the one attested


SPECS: tuple[Spec, ...] = (
    Spec("hello", "hello"),
    Spec("evil", "evil", tampered=True),
    Spec("lonely", "lonely", attested_by=("rb1",)),
    Spec("disputed", "disputed", attested_by=("rb1", "rb2"), dissent_by=("rb3",)),
    Spec("epochal", "epochal", epoch=3),
    Spec("libsplit", "libsplit", source="splitsrc"),
    Spec("up-1.0", "up", "1.0"),
    Spec("up-1.1", "up", "1.1"),
    Spec("up-1.2", "up", "1.2", attested_by=()),
    Spec("free", "free", repo="extras", attested_by=()),
    Spec("oldsum", "oldsum", repo="legacy"),
    Spec("newsum", "newsum", repo="modern"),
    Spec("localok", "localok", repo=None),
    Spec("localbad", "localbad", repo=None, attested_by=()),
)
REPO_CHECKSUMS = {"gated": "sha256", "extras": "sha256", "legacy": "sha1", "modern": "sha512"}


@dataclass
class World:
    directory: Path
    rebuilders: list[FakeRebuilder]
    repo_server: RebuilderServer
    files: dict[str, Path] = field(default_factory=dict)  # spec key -> the file dnf gets

    @property
    def repo_urls(self) -> dict[str, str]:
        return {repo: f"{self.repo_server.url}/{repo}/" for repo in REPO_CHECKSUMS}

    def policy(self, path: Path, threshold: int = 2, rebuilders: Sequence[str] | None = None,
               urls: dict[str, str] | None = None, **top: Any) -> Path:
        """The standard policy: *threshold* of rb1..rb3, ``extras`` not gated."""
        chosen = [r for r in self.rebuilders if rebuilders is None or r.name in rebuilders]
        entries = [r.entry() for r in chosen]
        for entry in entries:
            if urls and entry.name in urls:
                entry.url = urls[entry.name]
        top.setdefault("max_conflicts", 0)
        arrays = {"repository": [{"name": "extras", "match": ["extras"], "gate": False}]}
        return write_policy(path, entries, threshold=threshold, arrays=arrays, **top)

    def sandbox(self, base: Path, repos: Sequence[str] = ("gated", "extras"),
                policy: Path | None | str = "default", **kwargs: Any) -> DnfSandbox:
        """A fresh dnf sandbox on these repositories (policy: the standard one)."""
        if policy == "default":
            policy = self.policy(base / "policy" / "policy.toml")
        return DnfSandbox(base, {r: self.repo_urls[r] for r in repos}, policy, **kwargs)

    def close(self) -> None:
        self.repo_server.stop()
        for rb in self.rebuilders:
            if rb.server:
                rb.server.stop()


def _build(directory: Path, spec: Spec) -> tuple[Spec, Path, Path]:
    """Build the attested file and the file dnf will get (different only if tampered)."""
    honest = build_rpm(directory / "build" / spec.key, spec.name, spec.version, spec.release,
                       epoch=spec.epoch, source_name=spec.source, payload=f"{spec.key}\n".encode())
    served = honest
    if spec.tampered:
        served = build_rpm(directory / "build" / f"{spec.key}-tampered", spec.name, spec.version,
                           spec.release, epoch=spec.epoch, source_name=spec.source,
                           payload=b"backdoor\n")
    return spec, honest, served


def build_world(directory: Path) -> World:
    """Build every package, repository and rebuilder of the table above."""
    directory.mkdir(parents=True, exist_ok=True)
    serve = ServerSet()
    try:
        rebuilders = make_rebuilders(directory / "rebuilders", 3, serve)
        repo_root = directory / "repos"
        repo_server = serve(repo_root)
        world = World(directory, rebuilders, repo_server)
        by_name = {r.name: r for r in rebuilders}
        with ThreadPoolExecutor(4) as pool:
            built = list(pool.map(lambda s: _build(directory, s), SPECS))
        per_repo: dict[str, list[Path]] = {repo: [] for repo in REPO_CHECKSUMS}
        for spec, honest, served in built:
            world.files[spec.key] = served
            if spec.repo:
                per_repo[spec.repo].append(served)
            source = spec.source or spec.name
            vr = f"{spec.version}-{spec.release}"
            for name in spec.attested_by:
                by_name[name].publish(source, vr, {honest.name: honest.read_bytes()})
            for name in spec.dissent_by:
                by_name[name].publish(source, vr, {honest.name: b"a different build\n"})
        for repo, rpms in per_repo.items():
            make_rpm_repo(repo_root / repo, rpms)
            if REPO_CHECKSUMS[repo] != "sha256":
                subprocess.run(["createrepo_c", "--quiet", "--no-database", "--checksum",
                                REPO_CHECKSUMS[repo], "."], cwd=repo_root / repo, check=True,
                               capture_output=True, timeout=60)
        return world
    except BaseException:
        serve.stop()
        raise
