"""``rebuildgate status`` on real dpkg databases in throwaway roots.

Packages are installed for real (apt-get + dpkg into ``<tmp>/target``, or
``dpkg --root``), from plain (non-rebuildgate) sources so that unattested
ones install too; the status command then reads that dpkg database and
apt's indexes and archive cache through ``APT_CONFIG`` or ``--root``.  The
host's dpkg and apt state are compared before and after (conftest).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Mapping

import pytest

from tests.apt_transport.harness import AptEnv, flat_source
from tests.apt_transport.world import World
from tests.support.halts import HaltTeam
from tests.support.process import CommandResult, run_command
from tests.support.server import RebuilderServer

pytestmark = pytest.mark.timeout(240)


def rebuildgate(*args: str, env: Mapping[str, str] | None = None) -> CommandResult:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("APT_", "REBUILDGATE_"))}
    clean.update(env or {})
    return run_command([sys.executable, "-m", "rebuildgate.cli", *args], clean, timeout=120)


def json_lines(result: CommandResult) -> tuple[dict[str, dict], dict]:
    """(package objects by name, the summary object)."""
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects and objects[-1]["type"] == "summary", result
    return {o["name"]: o for o in objects[:-1]}, objects[-1]


def requests(servers: list[RebuilderServer]) -> list[int]:
    return [len(s.requests) for s in servers]


def test_status_of_a_dpkg_database_installed_by_apt(world: World, apt_factory) -> None:
    """Attested, unattested, conflicting, halted, cached-only and vanished packages;
    --what-if agrees with `verify` under the changed policy and fetches nothing again."""
    rbs = [world.rebuilder(f"rb{i}") for i in (1, 2, 3)]
    rb1, rb2, rb3 = rbs
    good = world.package("good", "1:2.0-1", source="goodsrc")
    lonely = world.package("lonely")
    disputed = world.package("disputed")
    stopped = world.package("stopped")
    cached = world.package("cached")
    gone = world.package("gone")
    orphan = world.package("orphan")
    for rb, pkgs in ((rb1, [good, lonely, disputed, stopped, cached, gone]), (rb2, [good, disputed, stopped, cached]),
                     (rb3, [good, stopped, gone])):
        for pkg in pkgs:
            world.attest(rb, pkg)
    world.attest(rb3, disputed, b"another build\n")
    everything = [good, lonely, disputed, stopped, cached, gone, orphan]
    repo = world.repo(everything)
    apt: AptEnv = apt_factory("apt", target=True)
    apt.sources([flat_source(repo.http, scheme="")])  # plain: apt installs what rebuildgate would block
    assert apt.update().returncode == 0
    installed = apt.install(*(p.name for p in everything))
    assert installed.returncode == 0, installed
    # cached and gone leave the index; only cached keeps its copy in apt's archive cache
    world.repo([good, lonely, disputed, stopped, orphan], serve=False)
    assert apt.update().returncode == 0
    (apt.archives / gone.filename).unlink()
    assert (apt.archives / cached.filename).is_file()

    team = HaltTeam(world.base / "team")
    team.publish(team.statement("alice", "bob", packages=["stopped"]))
    policy = world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())
    saved = rebuildgate("halt", "refresh", "--policy", str(policy))  # reads the feed, saves the halt state
    assert saved.returncode == 0 and "halt state saved" in saved.stdout, saved
    env = {"APT_CONFIG": str(apt.config)}
    servers = [rb.server for rb in rbs]
    assert all(servers)

    before = requests(servers)
    result = rebuildgate("status", "--policy", str(policy), "--json", env=env)
    assert result.returncode == 1, result
    assert [n - b for n, b in zip(requests(servers), before)] == [6, 6, 6], result  # one lookup per located package
    packages, summary = json_lines(result)
    assert {n: (p["located"], p["category"]) for n, p in packages.items()} == {
        "good": ("index", "attested"), "lonely": ("index", "fewer"), "disputed": ("index", "conflicting"),
        "stopped": ("index", "halted"), "cached": ("cache", "attested"), "gone": ("unknown", "unknown"),
        "orphan": ("index", "fewer")}
    assert packages["gone"]["where"] == "version no longer in any index" and packages["gone"]["verdict"] is None
    assert packages["good"]["sha256"] == good.sha256 and packages["good"]["file"] == "good_2.0-1_all.deb"
    assert packages["good"]["verdict"]["source"] == "goodsrc" and packages["good"]["version"] == "1:2.0-1"
    assert packages["cached"]["where"] == str(apt.archives / cached.filename)
    assert packages["cached"]["repo"] is None and packages["good"]["repo"] == repo.http[len("http://"):-1]
    assert "halted by H-1" in packages["stopped"]["verdict"]["reason"]
    assert summary["counts"] == {"attested": 2, "fewer": 2, "conflicting": 1, "halted": 1, "not-gated": 0,
                                 "unknown": 1}
    assert summary["meets_policy"] == 2 and summary["exit_status"] == 1
    assert summary["located"] == {"index": 5, "cache": 1, "unknown": 1}
    coverage = {c["rebuilder"]: c for c in summary["coverage"]}
    assert (coverage["rb1"]["attests"], coverage["rb1"]["alone"]) == (5, ["lonely 1.0-1 (all)"])
    assert (coverage["rb2"]["attests"], coverage["rb2"]["alone"], coverage["rb2"]["missing"]) == (4, [], 2)
    assert (coverage["rb3"]["attests"], coverage["rb3"]["conflicts"]) == (2, 1)

    # What if: the same evidence, judged again; each agrees with `verify` under that policy.
    scenarios = {
        "threshold=1": world.policy(rbs, threshold=1, tables=team.tables(), arrays=team.arrays(), name="p1.toml"),
        "max_conflicts=1": world.policy(rbs, threshold=2, max_conflicts=1, tables=team.tables(),
                                        arrays=team.arrays(), name="p2.toml"),
        "without=rb2": world.policy([rb1, rb3], threshold=2, tables=team.tables(), arrays=team.arrays(),
                                    name="p3.toml"),
    }
    before = requests(servers)
    args = [x for text in scenarios for x in ("--what-if", text)]
    result = rebuildgate("status", "--policy", str(policy), "--json", *args, env=env)
    assert result.returncode == 1, result
    assert [n - b for n, b in zip(requests(servers), before)] == [6, 6, 6]  # three what-ifs fetched nothing more
    packages, summary = json_lines(result)
    what_if = {w["what_if"]: w for w in summary["what_if"]}
    assert what_if["threshold=1"]["no_longer_blocked"] == ["lonely 1.0-1 (all)"]
    assert what_if["max_conflicts=1"]["no_longer_blocked"] == ["disputed 1.0-1 (all)"]
    assert what_if["without=rb2"]["newly_blocked"] == ["cached 1.0-1 (all)"]
    assert what_if["without=rb2"]["counts"]["attested"] == 1
    located = [good, lonely, disputed, stopped, cached, orphan]
    for text, changed in scenarios.items():
        direct = rebuildgate("verify", "--policy", str(changed), "--json", "--repo", repo.http,
                             *(str(p.deb) for p in located))
        assert direct.returncode == 1, direct
        verdicts = {o["name"]: o for o in map(json.loads, direct.stdout.splitlines())}
        for pkg in located:
            mine = packages[pkg.name]["what_if"][text]
            assert (mine["verdict"], mine["vote_count"], mine["conflict_count"]) == (
                verdicts[pkg.name]["verdict"], verdicts[pkg.name]["vote_count"],
                verdicts[pkg.name]["conflict_count"]), (text, pkg.name)
        meeting = sum(verdicts[p.name]["allowed"] for p in located)
        assert what_if[text]["meets_policy"] == meeting, text

    # The text report: summary, coverage, the packages that would be blocked.
    result = rebuildgate("status", "--policy", str(policy), "--what-if", "threshold=1", env=env)
    assert result.returncode == 1, result
    text = result.stdout
    assert "rebuildgate status: 7 installed package(s) (dpkg: " in text
    assert "files: 5 located by an index, 1 by a cached copy, 1 unknown" in text
    assert any(line.split() == ["attested", "by", ">=", "M", "2"] for line in text.splitlines()), text
    assert any(line.split() == ["meet", "the", "policy", "2", "of", "7"] for line in text.splitlines()), text
    assert "attested only by rb1: lonely 1.0-1 (all)" in text
    assert "would be blocked: 5 package(s)" in text
    [row] = [line for line in text.splitlines() if line.lstrip().startswith("gone ")]
    assert "unknown: version no longer in any index" in row
    assert "what if threshold=1 (the same evidence, judged again; nothing fetched)" in text
    assert "no longer blocked: lonely 1.0-1 (all)" in text
    assert "evidence for 6 of 6 package(s)" in result.stderr  # progress, as plain lines without a tty

    # Only some packages; only the problems.
    result = rebuildgate("status", "--policy", str(policy), "--json", "--only-problems", "good", "lonely", env=env)
    assert result.returncode == 1, result
    packages, summary = json_lines(result)
    assert list(packages) == ["lonely"] and summary["counts"]["attested"] == 1
    result = rebuildgate("status", "--policy", str(policy), "good", "cached", env=env)
    assert result.returncode == 0, result
    assert "would be blocked: 0 package(s)" in result.stdout


def test_status_of_a_root_given_with_dir(world: World, apt_factory) -> None:
    """--root ROOT reads ROOT's dpkg database, sources.list, indexes and archive cache
    (apt's Dir); a version two indexes list with different files is settled only by a
    cached copy, never guessed."""
    rb = world.rebuilder("rb1")
    listed = world.package("listed")
    local = world.package("local")
    twin = world.package("twin")
    for pkg in (listed, local, twin):
        world.attest(rb, pkg)
    main = world.repo([listed, twin])
    other = world.repo([world.tampered(twin, b"other twin\n")], name="other")
    system = apt_factory("system")  # Dir layout: ROOT/etc/apt, ROOT/var/lib/{apt,dpkg}, ROOT/var/cache/apt
    system.sources([flat_source(main.http, scheme=""), flat_source(other.http, scheme="")])
    assert system.update().returncode == 0
    for pkg in (listed, local, twin):
        dpkg = run_command(["dpkg", f"--root={system.root}", f"--log={system.root / 'dpkg.log'}", "-i", str(pkg.deb)],
                           timeout=60)
        assert dpkg.returncode == 0, dpkg
    shutil.copy(local.deb, system.archives / local.filename)
    policy = world.policy([rb], threshold=1)

    result = rebuildgate("status", "--policy", str(policy), "--root", str(system.root), "--json")
    assert result.returncode == 1, result
    packages, summary = json_lines(result)
    assert {n: p["located"] for n, p in packages.items()} == {"listed": "index", "local": "cache", "twin": "unknown"}
    assert packages["twin"]["where"] == ("indexes list 2 different files for this version and none is in apt's "
                                         "archive cache")
    assert packages["listed"]["category"] == packages["local"]["category"] == "attested"
    assert summary["database"] == str(system.root / "var/lib/dpkg/status")

    shutil.copy(twin.deb, system.archives / twin.filename)  # the cached copy names the file: main's
    result = rebuildgate("status", "--policy", str(policy), "--root", str(system.root), "--json", "twin")
    assert result.returncode == 0, result
    packages, _ = json_lines(result)
    assert (packages["twin"]["located"], packages["twin"]["sha256"]) == ("cache", twin.sha256)
    assert packages["twin"]["repo"] == main.http[len("http://"):-1]

    missing = rebuildgate("status", "--policy", str(policy), "--root", str(system.root), "nosuchpackage")
    assert missing.returncode == 2 and "not installed: nosuchpackage" in missing.stderr, missing
    nowhere = rebuildgate("status", "--policy", str(policy), "--root", str(world.base / "empty"))
    assert nowhere.returncode == 2 and "no dpkg status file or rpm database" in nowhere.stderr, nowhere
