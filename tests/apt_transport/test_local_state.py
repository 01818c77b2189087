"""Local state under real apt-get: what the user sees when the decision log cannot be written."""

from __future__ import annotations

import json

import pytest

from tests.apt_transport.harness import AptEnv, fetch, flat_source
from tests.apt_transport.world import World
from tests.support.disk import full_directory

pytestmark = pytest.mark.timeout(120)


def test_lost_decision_log_lines_are_shown_by_apt(world: World, apt: AptEnv) -> None:
    packages = [world.package(name) for name in ("hello", "world")]
    repo = world.repo(packages)
    rb = world.rebuilder("rb0")
    for pkg in packages:
        world.attest(rb, pkg)
    disk = world.base / "log-disk"
    policy = world.policy([rb], threshold=1, log=disk / "decisions.log")
    apt.sources([flat_source(repo.http)])
    opts = {"Rebuildgate::Policy": str(policy)}
    assert apt.update(options=opts).returncode == 0
    with full_directory(disk):
        result = apt.download("hello", "world", options=opts)
        assert (disk / "decisions.log").read_bytes() == b""  # nothing half-written
    assert result.returncode == 0, result  # the verdicts stand; the lost lines are said
    warnings = [line for line in result.output.splitlines() if line.startswith("W:") and "decision log" in line]
    assert len(warnings) == 2, result
    assert all("the decision log line was not written" in w and "No space left on device" in w for w in warnings)
    assert apt.downloaded() == ["hello_1.0-1_all.deb", "world_1.0-1_all.deb"]


def test_decision_log_lines_always_parse(world: World, apt: AptEnv) -> None:
    """A normal run: one whole JSON line per package."""
    packages = [world.package(f"p{i}") for i in range(12)]
    repo = world.repo(packages)
    rb = world.rebuilder("rb0")
    for pkg in packages:
        world.attest(rb, pkg)
    policy = world.policy([rb], threshold=1)
    assert fetch(apt, repo.http, policy, *[p.name for p in packages]).returncode == 0
    entries = [json.loads(line) for line in world.log.read_text().splitlines()]
    assert sorted(e["name"] for e in entries) == sorted(p.name for p in packages)
