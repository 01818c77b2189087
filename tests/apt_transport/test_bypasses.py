"""Real ``apt-get`` against an attacker who controls the repository's index.

The attacker may rewrite ``Packages`` (versions, epochs, ``Source:``,
package names) and may make a rebuilder's URL for the index's words lead to
the honest evidence, but controls neither the policy nor the keys.  Halts
and the allowlist must then judge the package by what its own control file
says, and halt state must stick although the method runs as ``_apt``.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from tests.apt_transport.harness import AptEnv, blocked_lines, fetch
from tests.apt_transport.world import World
from tests.support.disk import full_directory
from tests.support.halts import HaltTeam
from tests.support.packages import rewrite_apt_index

pytestmark = pytest.mark.timeout(150)


def halted_world(world: World, team: HaltTeam, **halt_match):
    """Two honest rebuilders, a halt (K = 2 of alice, bob, carol) covering *halt_match*."""
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]
    team.publish(team.statement("alice", "bob", **halt_match))
    return rbs, world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())


@pytest.mark.parametrize("index_version", ["1:1.0-1", "1.0-2"])
def test_the_index_cannot_rename_a_halted_version(world: World, apt: AptEnv, index_version: str) -> None:
    """Attack 1: the index gives the halted file another version (an epoch, or
    another revision) whose evidence path leads to the same attestation."""
    hello = world.package("hello")
    repo = world.repo([hello])
    team = HaltTeam(world.base / "team")
    rbs, policy = halted_world(world, team, packages=["hello"], versions=["1.0-1"])
    for rb in rbs:
        world.attest(rb, hello)
        world.attest(rb, hello, version=index_version.split(":")[-1])
    rewrite_apt_index(repo.directory, lambda text: text.replace("Version: 1.0-1", f"Version: {index_version}"))
    result = fetch(apt, repo.http, policy, "hello")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "halted by H-1" in line
    assert apt.downloaded() == []
    [decision] = world.decisions()
    assert decision["version"] == "1.0-1" and decision["verdict"] == "blocked"
    if index_version == "1.0-2":  # only the file's own version reveals it
        assert f"the repository index said (hello {index_version} (all), source hello)" in line
        assert decision["index_said"] == f"hello {index_version} (all), source hello"


def test_the_index_cannot_hide_the_source_of_a_halted_package(world: World, apt: AptEnv) -> None:
    """Attack 2: the index drops ``Source: hello`` for ``libhello1``."""
    lib = world.package("libhello1", source="hello")
    repo = world.repo([lib])
    team = HaltTeam(world.base / "team")
    rbs, policy = halted_world(world, team, packages=["hello"])
    for rb in rbs:
        world.attest(rb, lib)
        world.attest(rb, lib, source="libhello1")  # the index's source name leads to the same link
    rewrite_apt_index(repo.directory, lambda text: text.replace("Source: hello\n", ""))
    assert "Source:" not in (repo.directory / "Packages").read_text()
    result = fetch(apt, repo.http, policy, "libhello1")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "libhello1")
    assert "halted by H-1" in line and "index said (libhello1 1.0-1 (all), source libhello1)" in line
    assert apt.downloaded() == []


def test_the_allowlist_is_matched_on_the_package_itself(world: World, apt: AptEnv) -> None:
    """Attack 3: an unattested package renamed in the index to match ``linux-image-*``."""
    ssh = world.package("openssh-server")
    repo = world.repo([ssh])
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]  # nobody attests it
    allow = [{"package": "linux-image-*", "expires": dt.date.today() + dt.timedelta(days=30),
              "reason": "kernel is not reproducible yet"}]
    policy = world.policy(rbs, threshold=2, arrays={"allow": allow})
    rewrite_apt_index(repo.directory, lambda text: text.replace(
        "Package: openssh-server", "Package: linux-image-6.1.0-99-amd64"))
    result = fetch(apt, repo.http, policy, "linux-image-6.1.0-99-amd64")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "openssh-server")
    assert "openssh-server 1.0-1 (all): blocked: 0 votes (2 required)" in line
    assert "allowed by" not in result.output and apt.downloaded() == []

    # the same allowlist still lets a real linux-image package through
    kernel = world.package("linux-image-6.1.0-99-amd64")
    repo = world.repo([kernel], name="kernel-repo")
    apt.clean()
    result = fetch(apt, repo.http, policy, "linux-image-6.1.0-99-amd64")
    assert result.returncode == 0, result
    assert "allowed by allowlist (linux-image-* until" in result.output


def test_halts_stick_although_the_method_runs_as_apt(world: World, apt_factory) -> None:
    """Attack 4: after a K-signed halt was seen, a newer feed without it (or an
    older feed replayed) must not release the package.  The state is saved by
    root before the method drops to _apt, in a directory _apt cannot write."""
    hello = world.package("hello")
    repo = world.repo([hello])
    team = HaltTeam(world.base / "team")
    rbs, policy = halted_world(world, team, packages=["hello"])
    for rb in rbs:
        world.attest(rb, hello)
    first_feed = team.feed.read_bytes()
    state = world.base / "team" / "halt-state" / "halts.json"

    result = fetch(apt_factory("halted"), repo.http, policy, "hello")
    assert result.returncode == 100 and "halted by H-1" in blocked_lines(result, "hello")[0], result
    assert state.stat().st_uid == 0 and "H-1" in json.loads(state.read_text())["statements"]
    assert not os.access(state.parent, os.W_OK, effective_ids=False) or os.getuid() == 0

    team.publish()  # version 2: no statement at all
    result = fetch(apt_factory("feed-dropped-it"), repo.http, policy, "hello")
    assert result.returncode == 100 and "halted by H-1" in blocked_lines(result, "hello")[0], result

    team.feed.write_bytes(first_feed)  # version 1 again: a rollback
    result = fetch(apt_factory("replayed"), repo.http, policy, "hello")
    assert result.returncode == 100 and "halted by H-1" in blocked_lines(result, "hello")[0], result
    assert json.loads(state.read_text())["feeds"][f"file://{team.feed}"]["version"] == 2


def test_halt_state_that_cannot_be_saved_blocks(world: World, apt: AptEnv) -> None:
    """A run that cannot save what the feeds said must not rely on it: the
    stale rule (block) applies at once, with a line that says why."""
    hello, repo, rbs = world.attested("hello")
    state_dir = world.base / "full-disk"
    team = HaltTeam(world.base / "team", state_dir=str(state_dir))
    team.publish()
    policy = world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())
    with full_directory(state_dir):
        result = fetch(apt, repo.http, policy, "hello")
        assert [p.name for p in state_dir.iterdir()] == [".filler"]  # no temporary file left behind
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "halt-state-unsaved: cannot save halt state" in line and "stale = block" in line
    assert apt.downloaded() == []


def test_unreadable_halt_state_blocks(world: World, apt: AptEnv) -> None:
    hello, repo, rbs = world.attested("hello")
    team = HaltTeam(world.base / "team")
    team.publish()
    (world.base / "team" / "halt-state").mkdir()
    (world.base / "team" / "halt-state" / "halts.json").write_text("{ not json")
    policy = world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())
    result = fetch(apt, repo.http, policy, "hello")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "halt-error: halts could not be evaluated" in line and "is unreadable" in line
