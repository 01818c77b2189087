"""Halt flags through real apt-get: K-1 signatures do nothing, K stop, a K-signed lift releases."""

from __future__ import annotations

import pytest

from tests.apt_transport.harness import AptEnv, flat_source
from tests.apt_transport.world import World
from tests.support.halts import HaltTeam
from tests.support.policy import RebuilderEntry, write_policy

pytestmark = pytest.mark.timeout(120)


def test_halt_stops_apt_until_lifted(world: World, apt_factory) -> None:
    hello = world.package("hello")
    repo = world.repo([hello])
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]
    for rb in rbs:
        world.attest(rb, hello)
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
