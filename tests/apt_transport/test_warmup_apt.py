"""The warm-up after `apt-get update`, through real apt-get (issue #12).

apt runs the snippet's ``APT::Update::Post-Invoke-Success`` launcher, which
starts the warm-up in the background; with ``[fetch] warm_up = true`` it
fetches the evidence for every upgradable package from a ``rebuildgate+``
entry into the cache, and the upgrade then asks the rebuilders nothing.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.apt_transport.harness import flat_source
from tests.apt_transport.test_prompt import make_apt
from tests.apt_transport.world import World
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

INSTALLED = """Package: {name}
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 1
Maintainer: rebuildgate tests <tests@example.org>
Architecture: all
Version: {version}
Description: an older {name}, so that the repository's is an upgrade

"""


def _upgradable_world(world: World, apt_factory, warm_up: bool, names=("hello", "world"), latency: float = 0.0):
    pkgs = [world.package(name, "1.0-1") for name in names]
    repo = world.repo(pkgs)
    rbs = [world.rebuilder("rb0"), world.rebuilder("rb1")]
    for rb in rbs:
        for pkg in pkgs:
            world.attest(rb, pkg)
        assert rb.server is not None
        rb.server.latency = latency
    cache = world.base / "cache"
    policy = world.policy(rbs, threshold=2, fetch={"cache_dir": str(cache), "warm_up": warm_up})
    apt = make_apt(apt_factory, policy)
    apt.status.write_text("".join(INSTALLED.format(name=name, version="0.9-1") for name in names))
    apt.sources([flat_source(repo.http)])
    return pkgs, repo, rbs, cache, apt


def _evidence_requests(rbs) -> list[tuple[str, str]]:
    return [(rb.name, r) for rb in rbs for r in rb.server.requests]


def test_update_warms_the_cache_and_the_upgrade_asks_no_rebuilder(world: World, apt_factory) -> None:
    pkgs, repo, rbs, cache, apt = _upgradable_world(world, apt_factory, warm_up=True)
    assert apt.update().returncode == 0
    summary = cache / "warm-up.json"
    assert wait_until(summary.exists, 60), "the warm-up never finished"
    done = json.loads(summary.read_text())
    assert (done["packages"], done["fetched"], done["failed"]) == (2, 4, 0), done
    asked = _evidence_requests(rbs)
    assert len(asked) == len(set(asked)) == 4, asked  # each rebuilder's document for each package, once
    assert {r for _, r in asked} == {"/sources/hello/1.0-1/metadata", "/sources/world/1.0-1/metadata"}, asked
    result = apt.run("upgrade", "--download-only")
    assert result.returncode == 0, result
    assert sorted(apt.downloaded()) == sorted(p.filename for p in pkgs)
    assert _evidence_requests(rbs) == asked  # the hook and the method read the cache: no request
    decided = {(d["name"], d["verdict"]) for d in world.decisions()}
    assert decided == {("hello", "accepted"), ("world", "accepted")}, decided


def test_off_by_default(world: World, apt_factory) -> None:
    _pkgs, _repo, rbs, cache, apt = _upgradable_world(world, apt_factory, warm_up=False)
    assert apt.update().returncode == 0
    time.sleep(3)  # a warm-up, had one started, asks within milliseconds here
    assert _evidence_requests(rbs) == [] and not (cache / "warm-up.json").exists()


def test_update_does_not_wait_for_slow_rebuilders(world: World, apt_factory) -> None:
    """The launcher returns at once: apt-get update finishes while every
    rebuilder takes 8 s per answer, and the warm-up ends on its own."""
    _pkgs, _repo, rbs, cache, apt = _upgradable_world(world, apt_factory, warm_up=True, latency=8.0)
    started = time.monotonic()
    assert apt.update(timeout=60).returncode == 0
    finished = time.monotonic()
    assert not (cache / "warm-up.json").exists() and finished - started < 8.0
    assert wait_until((cache / "warm-up.json").exists, 60)
    done = json.loads((cache / "warm-up.json").read_text())
    assert done["packages"] == 2 and done["fetched"] == 0 and done["failed"] == 4, done
