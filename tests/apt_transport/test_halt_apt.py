"""Halt flags through real apt-get: K-1 signatures do nothing, K stop, a K-signed lift releases."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.apt_transport.harness import AptEnv, fetch, flat_source
from tests.apt_transport.world import World
from tests.support.halts import HaltTeam
from tests.support.policy import RebuilderEntry, write_policy
from tests.support.process import run_command

pytestmark = pytest.mark.timeout(120)


def test_halt_stops_apt_until_lifted(world: World, apt_factory) -> None:
    hello, repo, rbs = world.attested("hello")
    team = HaltTeam(world.base / "team")  # its feed is read after the method dropped to _apt
    policy = write_policy(world.base / "halt-policy.toml",
                          [RebuilderEntry(rb.name, rb.url, [rb.key.public_pem]) for rb in rbs], threshold=2,
                          log=world.log, tables=team.tables(), arrays=team.arrays())
    policy.chmod(0o600)

    def download(step: str):
        apt: AptEnv = apt_factory(step)
        apt.sources([flat_source(repo.http, "rebuildgate+")])
        opts = {"Rebuildgate::Policy": str(policy)}
        assert apt.update(options=opts).returncode == 0
        return apt, apt.download("hello", options=opts)

    team.publish(team.statement("alice", packages=["hello"]))
    apt, result = download("k-minus-one")
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]

    team.publish(team.statement("alice", "bob", packages=["hello"]))
    apt, result = download("halted")
    assert result.returncode == 100, result
    [line] = [x for x in result.output.splitlines() if x.startswith("E: Failed to fetch") and "/hello_" in x]
    assert "halted by H-1 (reason for H-1; signed by alice, bob)" in line
    assert apt.downloaded() == []

    team.publish(team.statement("alice", "bob", packages=["hello"]),
                 team.statement("bob", "carol", action="lift", version=2))
    apt, result = download("lifted")
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]


def test_halt_naming_a_flat_repository_as_host_slash_star_stops_apt(world: World, apt: AptEnv) -> None:
    """`--repository 127.0.0.1:PORT/*` never matched apt's id `127.0.0.1:PORT`: `halt status`
    said IN FORCE while apt-get went ahead.  A signed halt is read as what it names, and
    `halt status` says the pattern is wrong."""
    hello, repo, rbs = world.attested("hello")
    team = HaltTeam(world.base / "team")
    policy = write_policy(world.base / "halt-policy.toml",
                          [RebuilderEntry(rb.name, rb.url, [rb.key.public_pem]) for rb in rbs], threshold=2,
                          log=world.log, tables=team.tables(), arrays=team.arrays())
    policy.chmod(0o600)
    assert repo.server is not None
    host = repo.server.url.removeprefix("http://")
    team.publish(team.statement("alice", "bob", repositories=[f"{host}/*"]))

    apt.sources([flat_source(repo.http, "rebuildgate+")])
    opts = {"Rebuildgate::Policy": str(policy)}
    assert apt.update(options=opts).returncode == 0
    result = apt.download("hello", options=opts)
    assert result.returncode == 100, result
    [line] = [x for x in result.output.splitlines() if x.startswith("E: Failed to fetch") and "/hello_" in x]
    assert "halted by H-1 (reason for H-1; signed by alice, bob)" in line
    assert apt.downloaded() == []

    status = run_command([sys.executable, "-m", "rebuildgate.cli", "halt", "status", "--policy", str(policy)],
                         None, 60)
    assert status.returncode == 1 and "halt H-1 v1: IN FORCE" in status.output  # 1: the halt blocks installs
    assert f"repository pattern '{host}/*' misses the repository '{host}' itself" in status.output


def test_an_override_shows_a_warning_in_apt(world: World, apt_factory) -> None:
    """An admin's override lets the package through as loudly as audit mode does: a W: line."""
    hello, repo, rbs = world.attested("hello")
    team = HaltTeam(world.base / "team")
    policy = world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())
    team.publish(team.statement("alice", "bob", packages=["hello"]))
    r = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "halt", "override", "H-1", "--reason",
                        "checked: harmless", "--policy", str(policy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    apt: AptEnv = apt_factory("overridden")
    result = fetch(apt, repo.http, policy, "hello")
    assert result.returncode == 0, result
    [warning] = [x for x in result.output.splitlines() if x.startswith("W:") and "rebuildgate" in x]
    assert "hello 1.0-1 (all): accepted past admin override of halt H-1" in warning and "checked: harmless" in warning
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
