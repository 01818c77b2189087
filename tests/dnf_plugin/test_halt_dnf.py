"""Halt flags through real dnf: K-1 signatures do nothing, K stop, a K-signed lift releases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.dnf_plugin.world import World
from tests.support.halts import HaltTeam
from tests.support.policy import write_policy

pytestmark = pytest.mark.timeout(120)


def test_halt_stops_dnf_until_lifted(world: World, tmp_path: Path) -> None:
    team = HaltTeam(tmp_path / "team")
    policy = write_policy(tmp_path / "policy" / "policy.toml", [r.entry() for r in world.rebuilders], threshold=2,
                          tables=team.tables(), arrays={**team.arrays(), "repository": [
                              {"name": "extras", "match": ["extras"], "gate": False}]})

    def install(step: str):
        return world.sandbox(tmp_path / step, policy=policy).run("install", "hello")

    team.publish(team.statement("alice", packages=["hello"]))
    ok = install("k-minus-one")
    assert ok.returncode == 0, ok

    team.publish(team.statement("alice", "bob", packages=["hello"]))
    stopped = install("halted")
    assert stopped.returncode == 1, stopped
    assert "halted by H-1 (reason for H-1; signed by alice, bob)" in stopped.stderr
    assert "Downloading Packages" not in stopped.stdout

    team.publish(team.statement("alice", "bob", packages=["hello"]),
                 team.statement("bob", "carol", action="lift", version=2))
    lifted = install("lifted")
    assert lifted.returncode == 0, lifted


def test_an_override_shows_a_warning_in_dnf(world: World, tmp_path: Path) -> None:
    team = HaltTeam(tmp_path / "team")
    policy = write_policy(tmp_path / "policy" / "policy.toml", [r.entry() for r in world.rebuilders], threshold=2,
                          tables=team.tables(), arrays={**team.arrays(), "repository": [
                              {"name": "extras", "match": ["extras"], "gate": False}]})
    team.publish(team.statement("alice", "bob", packages=["hello"]))
    r = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "halt", "override", "H-1", "--reason",
                        "checked: harmless", "--policy", str(policy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result = world.sandbox(tmp_path / "dnf", policy=policy).run("install", "hello")
    assert result.returncode == 0, result
    assert "1 package(s) let through past a halt by the admin's override (admin override of halt H-1)" \
        in result.stderr, result
