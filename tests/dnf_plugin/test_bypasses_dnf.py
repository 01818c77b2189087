"""Real ``dnf`` against an attacker who controls a repository's metadata.

Each test serves the session world's real rpms from a repository of its own
whose ``primary.xml`` lies (an epoch, a source rpm, a package name) with
checksums made to match, as a compromised mirror would.  Halts and the
allowlist must judge the package by its own rpm header.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Callable

import pytest

from tests.dnf_plugin.harness import DnfSandbox
from tests.dnf_plugin.world import World
from tests.support.halts import HaltTeam
from tests.support.packages import make_rpm_repo, rewrite_rpm_primary
from tests.support.policy import write_policy

pytestmark = pytest.mark.timeout(120)
_serial = itertools.count()


def lying_repo(world: World, spec_key: str, edit: Callable[[str], str]) -> tuple[str, str]:
    """(repo id, base URL) of a new repository holding the real rpm of *spec_key*
    whose primary.xml has been rewritten by *edit*."""
    repo_id = f"lying{next(_serial)}"
    directory = world.directory / "repos" / repo_id
    make_rpm_repo(directory, [world.files[spec_key]])
    rewrite_rpm_primary(directory, edit)
    return repo_id, f"{world.repo_server.url}/{repo_id}/"


def run(world: World, base: Path, repo: tuple[str, str], policy: Path, package: str):
    sandbox = DnfSandbox(base, {repo[0]: repo[1]}, policy)
    return sandbox, sandbox.run("install", package)


def halt_policy(world: World, tmp_path: Path, **match) -> Path:
    team = HaltTeam(tmp_path / "team")
    team.publish(team.statement("alice", "bob", **match))
    return write_policy(tmp_path / "policy.toml", [r.entry() for r in world.rebuilders], threshold=2,
                        tables=team.tables(), arrays=team.arrays())


def test_an_epoch_in_the_metadata_cannot_escape_a_halt(world: World, tmp_path: Path) -> None:
    """Attack 1 through dnf: ``epoch="1"`` in primary.xml for the halted hello 1.0-1."""
    repo = lying_repo(world, "hello", lambda xml: xml.replace('epoch="0"', 'epoch="1"'))
    policy = halt_policy(world, tmp_path, packages=["hello"], versions=["1.0-1"])
    sandbox, result = run(world, tmp_path / "dnf", repo, policy, "hello")
    assert result.returncode == 1, result
    assert "halted by H-1" in result.stderr and "Nothing was downloaded or installed." in result.stderr
    assert not sandbox.installed()


def test_a_source_rpm_in_the_metadata_cannot_escape_a_halt(world: World, tmp_path: Path) -> None:
    """Attack 2 through dnf: libsplit (source splitsrc) listed as built from libsplit,
    whose evidence path leads to the same attestation; the halt names splitsrc."""
    for rb in world.rebuilders:  # the index's source name leads to the honest link
        rb.publish("libsplit", "1.0-1", {"libsplit-1.0-1.noarch.rpm": world.files["libsplit"].read_bytes()})
    repo = lying_repo(world, "libsplit", lambda xml: xml.replace("splitsrc-1.0-1.src.rpm", "libsplit-1.0-1.src.rpm"))
    policy = halt_policy(world, tmp_path, packages=["splitsrc"])
    sandbox, result = run(world, tmp_path / "dnf", repo, policy, "libsplit")
    assert result.returncode == 1, result
    assert "before installing" in result.stderr and "halted by H-1" in result.stderr, result
    assert "Nothing was installed." in result.stderr
    assert not sandbox.installed()


def test_the_allowlist_is_matched_on_the_rpm_header(world: World, tmp_path: Path) -> None:
    """Attack 3 through dnf: ``lonely`` (one vote of two) renamed to match ``kernel-*``."""
    repo = lying_repo(world, "lonely", lambda xml: xml.replace("<name>lonely</name>", "<name>kernel-core</name>"))
    allow = [{"package": "kernel-*", "expires": dt.date.today() + dt.timedelta(days=30),
              "reason": "kernel is not reproducible yet"}]
    policy = write_policy(tmp_path / "policy.toml", [r.entry() for r in world.rebuilders], threshold=2,
                          arrays={"allow": allow})
    sandbox, result = run(world, tmp_path / "dnf", repo, policy, "kernel-core")
    assert result.returncode == 1, result
    assert "before installing" in result.stderr and "lonely-1.0-1.noarch" in result.stderr, result
    assert "1 vote (2 required)" in result.stderr
    assert "judged as the file says, not as the repository index said (kernel-core 1.0-1" in result.stderr
    assert not sandbox.installed()


def test_an_ungated_repository_cannot_rename_a_halted_package(world: World, tmp_path: Path) -> None:
    """Halts apply to ungated repositories too, judged on the rpm header: 'lonely' listed as 'innocent'."""
    repo = lying_repo(world, "lonely", lambda xml: xml.replace("<name>lonely</name>", "<name>innocent</name>")
                      .replace("lonely-1.0-1.src.rpm", "innocent-1.0-1.src.rpm"))
    team = HaltTeam(tmp_path / "team")
    team.publish(team.statement("alice", "bob", packages=["lonely"]))
    policy = write_policy(tmp_path / "policy.toml", [r.entry() for r in world.rebuilders], threshold=2,
                          tables=team.tables(), arrays={**team.arrays(), "repository": [
                              {"name": "mirror", "match": [repo[0]], "gate": False}]})
    sandbox, result = run(world, tmp_path / "dnf", repo, policy, "innocent")
    assert result.returncode == 1, result
    assert "before installing" in result.stderr and "halted by H-1" in result.stderr, result
    assert not sandbox.installed()
