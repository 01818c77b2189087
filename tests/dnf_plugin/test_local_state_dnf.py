"""Local state under real dnf: lost decision log lines are said, the verdicts stand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dnf_plugin.world import World
from tests.support.disk import full_directory

pytestmark = pytest.mark.timeout(120)


def test_lost_decision_log_lines_are_shown_by_dnf(world: World, tmp_path: Path) -> None:
    disk = tmp_path / "log-disk"
    policy = world.policy(tmp_path / "policy.toml", log=disk / "decisions.log")
    sandbox = world.sandbox(tmp_path / "dnf", policy=policy)
    with full_directory(disk):
        result = sandbox.run("install", "hello")
        assert (disk / "decisions.log").read_bytes() == b""
    assert result.returncode == 0, result
    assert "rebuildgate: 1 of 1 decision log line(s) were not written" in result.stderr, result
    assert "No space left on device" in result.stderr
    assert any(n.startswith("hello-") for n in sandbox.installed())
