"""``rebuildgate status`` on a real rpm database in a dnf installroot.

Packages are installed with the real ``/usr/bin/dnf`` (no plugin, so
unattested ones install too) into a sandbox; the status command then reads
its rpm database and dnf's cached repository metadata and package cache
through ``--root`` / ``--config`` / ``--dbpath`` / ``--setopt``, as dnf
would, never the host's.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.dnf_plugin.harness import RPMDB, DnfSandbox, host_state
from tests.dnf_plugin.world import World
from tests.support.halts import HaltTeam
from tests.support.packages import build_rpm, make_rpm_repo
from tests.support.policy import write_policy
from tests.support.process import CommandResult, run_command
from tests.support.server import RebuilderServer

pytestmark = pytest.mark.timeout(240)


def rebuildgate(*args: str) -> CommandResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APT_", "REBUILDGATE_"))}
    return run_command([sys.executable, "-m", "rebuildgate.cli", *args], env, timeout=120)


def status_args(sandbox: DnfSandbox) -> list[str]:
    """The sandbox's dnf, as `rebuildgate status` is pointed at it (dnf's own options)."""
    return ["--root", str(sandbox.root), "--config", str(sandbox.conf), "--dbpath", RPMDB,
            "--setopt", f"reposdir={sandbox.reposdir}", "--setopt", f"cachedir={sandbox.cache}"]


def json_lines(result: CommandResult) -> tuple[dict[str, dict], dict]:
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects and objects[-1]["type"] == "summary", result
    return {o["name"]: o for o in objects[:-1]}, objects[-1]


def policy_file(world: World, path: Path, team: HaltTeam, threshold: int = 2,
                rebuilders: tuple[str, ...] = ("rb1", "rb2", "rb3")) -> Path:
    """world.py's standard policy (``extras`` not gated) with the team's halts."""
    entries = [rb.entry() for rb in world.rebuilders if rb.name in rebuilders]
    return write_policy(path, entries, threshold=threshold, tables=team.tables(), arrays={
        **team.arrays(), "repository": [{"name": "extras", "match": ["extras"], "gate": False}]})


def test_status_of_an_rpm_database_in_a_dnf_installroot(world: World, tmp_path: Path,
                                                       rebuilder_server: Callable[..., RebuilderServer]) -> None:
    sandbox = world.sandbox(tmp_path / "dnf", policy=None, plugin=False)
    assert sandbox.run("install", "hello", "lonely", "disputed", "epochal", "free").returncode == 0
    local = world.files["localok"]
    assert sandbox.run("install", f"./{local.name}", cwd=local.parent).returncode == 0
    # oldie comes from a repository that is gone since; dnf kept its copy (keepcache=1)
    oldie = build_rpm(tmp_path / "build", "oldie", "0.9", payload=b"old\n")
    gone_repo = make_rpm_repo(tmp_path / "gone-repo", [oldie])
    served = rebuilder_server(gone_repo)
    sandbox.write_repos({**sandbox.repos, "gone": f"{served.url}/"})
    assert sandbox.run("install", "oldie", setopts=["keepcache=1"]).returncode == 0
    sandbox.write_repos({k: v for k, v in sandbox.repos.items() if k != "gone"})
    assert sandbox.installed() == {"hello-1.0-1.noarch", "lonely-1.0-1.noarch", "disputed-1.0-1.noarch",
                                   "epochal-3:1.0-1.noarch", "free-1.0-1.noarch", "localok-1.0-1.noarch",
                                   "oldie-0.9-1.noarch"}

    team = HaltTeam(tmp_path / "team")
    team.publish(team.statement("alice", "bob", packages=["epochal"]))
    policy = policy_file(world, tmp_path / "policy.toml", team)
    assert rebuildgate("halt", "refresh", "--policy", str(policy)).returncode == 0  # saves the halt state
    rpmdb = sandbox.root / RPMDB.lstrip("/") / "rpmdb.sqlite"
    db_before, host_before = hashlib.sha256(rpmdb.read_bytes()).hexdigest(), host_state()
    asked = [len(rb.server.requests) for rb in world.rebuilders]

    what_ifs = {"threshold=1": policy_file(world, tmp_path / "p1.toml", team, threshold=1),
                "rebuilders=rb1+rb2": policy_file(world, tmp_path / "p2.toml", team, rebuilders=("rb1", "rb2"))}
    result = rebuildgate("status", "--policy", str(policy), "--json", *status_args(sandbox),
                         *(x for text in what_ifs for x in ("--what-if", text)))
    assert result.returncode == 1, result
    # hello, lonely, disputed, epochal and oldie were looked up once each; free is not gated
    assert [len(rb.server.requests) - n for rb, n in zip(world.rebuilders, asked)] == [5, 5, 5]
    assert hashlib.sha256(rpmdb.read_bytes()).hexdigest() == db_before and host_state() == host_before
    packages, summary = json_lines(result)
    assert {n: (p["located"], p["category"]) for n, p in packages.items()} == {
        "hello": ("index", "attested"), "lonely": ("index", "fewer"), "disputed": ("index", "conflicting"),
        "epochal": ("index", "halted"), "free": ("index", "not-gated"), "localok": ("unknown", "unknown"),
        "oldie": ("cache", "fewer")}
    assert packages["localok"]["where"] == "version no longer in any index"
    assert packages["hello"]["repo"] == "gated" and packages["free"]["repo"] == "extras"
    assert packages["hello"]["sha256"] == hashlib.sha256(world.files["hello"].read_bytes()).hexdigest()
    assert packages["epochal"]["version"] == "3:1.0-1" and packages["epochal"]["file"] == "epochal-1.0-1.noarch.rpm"
    assert Path(packages["oldie"]["where"]).parent.parent.parent == sandbox.cache
    assert packages["oldie"]["sha256"] == hashlib.sha256(oldie.read_bytes()).hexdigest()
    assert summary["counts"] == {"attested": 1, "fewer": 2, "conflicting": 1, "halted": 1, "not-gated": 1,
                                 "unknown": 1}
    assert summary["meets_policy"] == 2 and summary["package_manager"] == "rpm"
    assert summary["database"] == str(sandbox.root / RPMDB.lstrip("/"))
    coverage = {c["rebuilder"]: c for c in summary["coverage"]}
    assert (coverage["rb1"]["attests"], coverage["rb1"]["alone"]) == (4, ["lonely 1.0-1 (noarch)"])
    assert (coverage["rb3"]["attests"], coverage["rb3"]["conflicts"]) == (2, 1)
    changes = {w["what_if"]: w for w in summary["what_if"]}
    assert changes["threshold=1"]["no_longer_blocked"] == ["lonely 1.0-1 (noarch)"]
    assert changes["rebuilders=rb1+rb2"]["no_longer_blocked"] == ["disputed 1.0-1 (noarch)"]

    # Each what-if says what `verify` says of the same files under that policy.
    files = {"hello": "gated", "lonely": "gated", "disputed": "gated", "epochal": "gated"}
    for text, changed in what_ifs.items():
        direct = {}
        for name, repo in files.items():
            run = rebuildgate("verify", "--policy", str(changed), "--json", "--repo", repo, str(world.files[name]))
            direct[name] = json.loads(run.stdout)
        run = rebuildgate("verify", "--policy", str(changed), "--json", str(oldie))
        direct["oldie"] = json.loads(run.stdout)
        for name, verdict in direct.items():
            mine = packages[name]["what_if"][text]
            assert (mine["verdict"], mine["vote_count"], mine["conflict_count"], mine["allowed"]) == (
                verdict["verdict"], verdict["vote_count"], verdict["conflict_count"], verdict["allowed"]), (text, name)

    text = rebuildgate("status", "--policy", str(policy), *status_args(sandbox), "--only-problems")
    assert text.returncode == 1, text
    assert "rebuildgate status: 7 installed package(s) (rpm: " in text.stdout
    assert "would be blocked: 5 package(s)" in text.stdout and "coverage" not in text.stdout
    [row] = [line for line in text.stdout.splitlines() if line.lstrip().startswith("epochal ")]
    assert "3:1.0-1" in row and "halted by H-1" in row

    # A repository dnf never cached has no records: said, not fetched, not an error.
    sandbox.write_repos({**sandbox.repos, "never": "http://127.0.0.1:9/never/"})
    result = rebuildgate("status", "--policy", str(policy), "--json", *status_args(sandbox), "hello")
    assert result.returncode == 0, result
    packages, summary = json_lines(result)
    assert packages["hello"]["located"] == "index"
    assert any("no cache for 'never'" in w for w in summary["warnings"]), summary["warnings"]
