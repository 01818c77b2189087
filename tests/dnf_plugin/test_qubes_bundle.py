"""Qubes-shaped, with real dnf: an UpdateVM collects, a dom0 with no network verifies.

* The "UpdateVM" resolves and downloads with ``dnf --downloadonly`` from the
  repository on 127.0.0.1, the plugin in ``mode = collect`` writing the
  evidence bundle in ``resolved()``.
* The downloaded rpms and the bundle are copied to "dom0", which runs dnf
  under ``unshare --net`` (a network namespace of its own: not even the
  host's loopback, so no rebuilder can be reached) with the plugin gating
  and the policy reading the bundle with ``offline = true``; it installs
  from a local repository made of the copied rpms, as dom0 installs from
  ``qubes-dom0-cached``.
* A compromised UpdateVM controls the bundle: every way it tampers with the
  documents gets nothing through.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dnf_plugin.harness import DnfResult, DnfSandbox
from tests.dnf_plugin.world import World
from tests.support.bundles import ATTACKS, attack, metadata_path
from tests.support.fifos import release_fifos
from tests.support.packages import make_rpm_repo

pytestmark = pytest.mark.timeout(180)

NO_NETWORK = ("unshare", "--net", "--")
MAX_BYTES = 64 * 1024
DOM0_REPO = "qubes-dom0-cached"


@dataclass
class Downloaded:
    """What the UpdateVM hands over: the rpms and the evidence bundle."""

    rpms: list[Path]
    bundle: Path
    updatevm: DnfResult


@pytest.fixture(scope="module")
def downloaded(world: World, tmp_path_factory: pytest.TempPathFactory) -> Downloaded:
    """One UpdateVM run: ``dnf --downloadonly install hello evil up-1.1-1`` in collect mode."""
    base = tmp_path_factory.mktemp("updatevm")
    bundle = base / "rebuildgate-bundle"
    policy = world.policy(base / "policy" / "policy.toml")
    keys = str(world.rebuilders[0].key.public_pem.parent)
    policy.write_text(policy.read_text().replace(keys, "/nonexistent/keys"))  # the UpdateVM has no keys
    updatevm = world.sandbox(base / "dnf", repos=("gated",), policy=policy,
                             plugin_conf_extra={"mode": "collect", "bundle_dir": str(bundle)})
    downloads = base / "packages"
    result = updatevm.run("install", "--downloadonly", f"--downloaddir={downloads}", "hello", "evil",
                          "up-1.1-1")  # not up-1.2, which nobody attests: collect mode would download it
    assert result.returncode == 0, result
    assert updatevm.installed() == set()  # downloaded only
    return Downloaded(sorted(downloads.glob("*.rpm")), bundle, result)


def dom0(world: World, base: Path, downloaded: Downloaded, bundle: Path | None = None) -> DnfSandbox:
    """A dom0 installing the UpdateVM's rpms from a local repository, its
    policy reading the (copied) bundle offline."""
    bundle = bundle or base / "bundle"
    if not bundle.exists():
        shutil.copytree(downloaded.bundle, bundle, symlinks=True)
    repo = make_rpm_repo(base / "updates", downloaded.rpms)
    policy = world.policy(base / "policy" / "policy.toml",
                          fetch={"bundle": str(bundle), "offline": True, "max_bytes": MAX_BYTES})
    return DnfSandbox(base / "dnf", {DOM0_REPO: f"file://{repo}"}, policy)


def requests_to_rebuilders(world: World) -> int:
    return sum(len(rb.server.requests) for rb in world.rebuilders if rb.server)


def test_updatevm_collects_and_offline_dom0_installs_only_attested_packages(world: World, downloaded: Downloaded,
                                                                             tmp_path: Path) -> None:
    names = sorted(p.name for p in downloaded.rpms)
    assert names == ["evil-1.0-1.noarch.rpm", "hello-1.0-1.noarch.rpm", "up-1.1-1.noarch.rpm"]
    for rb in ("rb1", "rb2", "rb3"):
        for source, version in (("hello", "1.0-1"), ("evil", "1.0-1"), ("up", "1.1-1")):
            assert metadata_path(downloaded.bundle, rb, source, version).is_file()
    assert (downloaded.bundle / "manifest.json").is_file()
    sandbox = dom0(world, tmp_path, downloaded)
    before = requests_to_rebuilders(world)
    ok = sandbox.run("install", "hello", "up", wrapper=NO_NETWORK)
    assert ok.returncode == 0, ok
    assert sandbox.installed() == {"hello-1.0-1.noarch", "up-1.1-1.noarch"}
    tampered = sandbox.run("install", "evil", wrapper=NO_NETWORK)
    assert tampered.returncode == 1 and "Error: rebuildgate blocked" in tampered.stderr, tampered
    assert "rb1 (conflict), rb2 (conflict), rb3 (conflict)" in tampered.stderr
    assert not any(n.startswith("evil-") for n in sandbox.installed())
    assert requests_to_rebuilders(world) == before  # dom0 never reached a rebuilder


def test_dom0_without_a_bundle_blocks_and_makes_no_request(world: World, downloaded: Downloaded,
                                                          tmp_path: Path) -> None:
    empty = tmp_path / "empty-bundle"
    empty.mkdir()
    sandbox = dom0(world, tmp_path, downloaded, bundle=empty)
    result = sandbox.run("install", "hello", wrapper=NO_NETWORK)
    assert result.returncode == 1 and "rb1 (missing), rb2 (missing), rb3 (missing)" in result.stderr, result
    assert sandbox.installed() == set()


@pytest.mark.parametrize("kind", ATTACKS)
def test_compromised_updatevm_bundle_gets_nothing_through(world: World, downloaded: Downloaded, tmp_path: Path,
                                                          kind: str) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(downloaded.bundle, bundle, symlinks=True)
    planted = []
    for rb in ("rb1", "rb2", "rb3"):
        other = metadata_path(bundle, rb, "up", "1.1-1")
        planted.append(attack(kind, bundle, rb, "hello", "1.0-1", other=other, outside=tmp_path / "outside",
                              max_bytes=MAX_BYTES))
    sandbox = dom0(world, tmp_path, downloaded, bundle=bundle)
    try:
        result = sandbox.run("install", "hello", wrapper=NO_NETWORK, timeout=60)
    finally:
        if kind == "fifo":
            release_fifos(planted)
    assert result.returncode == 1, result
    assert "Error: rebuildgate blocked 1 of 1 package(s) before download" in result.stderr, result
    assert "0/2" in result.stderr
    assert sandbox.installed() == set()
