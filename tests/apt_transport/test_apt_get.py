"""Real ``apt-get`` through ``rebuildgate+http://`` (and ``+file://``).

Each test builds its own repository and rebuilders on 127.0.0.1, writes a
policy readable by root only, and runs apt-get 2.6 with a private
APT_CONFIG (tests/apt_transport/harness.py).  ``apt-get install
--download-only`` exercises the whole fetch path; a package that passes
lands in the private archives directory, one that is blocked must not
(neither finished nor in partial/).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time

import pytest

from tests.apt_transport.harness import AptEnv, blocked_lines, fetch, flat_source, policy_opt
from tests.apt_transport.world import World
from tests.support.server import Fault

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- accepted ---------------------------------------------------------------------


def test_all_agree_downloaded(world: World, apt: AptEnv):
    hello, repo, rbs = world.attested("hello", rebuilders=3)
    result = fetch(apt, repo.http, world.policy(rbs, threshold=2), "hello")
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    [decision] = world.decisions()
    assert decision["verdict"] == "accepted" and decision["vote_count"] == 3
    assert decision["sha256"] == hello.sha256 and decision["repo"].startswith("127.0.0.1:")
    # every rebuilder was asked by source name and upstream version
    for rb in rbs:
        assert "/sources/hello/1.0-1/metadata" in rb.server.requests


def test_epoch_and_source_name_differs(world: World, apt: AptEnv):
    """Binary libfoo1 2:1.5-2 from source foo: evidence is under sources/foo/1.5-2/."""
    lib = world.package("libfoo1", "2:1.5-2", source="foo")
    tool = world.package("foo-tools", "1:0.3-1", source="foo (1:0.3-1)")
    repo = world.repo([lib, tool])
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]
    for rb in rbs:
        world.attest(rb, lib)
        world.attest(rb, tool)
    result = fetch(apt, repo.http, world.policy(rbs, threshold=2), "libfoo1", "foo-tools")
    assert result.returncode == 0, result
    assert apt.downloaded() == ["foo-tools_1%3a0.3-1_all.deb", "libfoo1_2%3a1.5-2_all.deb"]
    for rb in rbs:
        assert "/sources/foo/1.5-2/metadata" in rb.server.requests
        assert "/sources/foo/0.3-1/metadata" in rb.server.requests
        assert not any("libfoo1" in r or "%3a" in r.lower() for r in rb.server.requests)
    assert {(d["name"], d["source"], d["version"]) for d in world.decisions()} == {
        ("libfoo1", "foo", "2:1.5-2"), ("foo-tools", "foo", "1:0.3-1")}


def test_index_files_pass_through_unchanged(world: World, apt_factory):
    """apt-get update through the method fetches the same lists as plain http,
    even with a policy that cannot be loaded (indexes are never gated)."""
    hello = world.package("hello")
    repo = world.repo([hello])
    plain, gated = apt_factory("plain"), apt_factory("gated")
    plain.sources([flat_source(repo.http, "")])
    gated.sources([flat_source(repo.http)])
    assert plain.update().returncode == 0
    result = gated.update(options=policy_opt(world.base / "missing.toml"))
    assert result.returncode == 0, result
    assert "rebuildgate" not in result.stderr

    def lists(env: AptEnv) -> dict[str, bytes]:
        return {p.name.split("_", 1)[1]: p.read_bytes() for p in (env.state / "lists").glob("*_*")
                if p.is_file() and not p.name.endswith("lock")}
    assert lists(plain) == lists(gated) and any(k.endswith("Packages") for k in lists(gated))


def test_file_scheme_in_deb822_sources(world: World, apt: AptEnv):
    hello, world_pkg = world.package("hello"), world.package("world")
    repo = world.repo([hello, world_pkg], serve=False)
    rbs = [world.rebuilder(f"rb{i}", serve=False) for i in range(2)]  # file:// rebuilders too
    for rb in rbs:
        world.attest(rb, hello)
    (apt.etc / "sources.list.d" / "local.sources").write_text(
        f"Types: deb\nURIs: rebuildgate+{repo.file}\nSuites: ./\nTrusted: yes\n")
    options = policy_opt(world.policy(rbs, threshold=2))
    assert apt.update(options=options).returncode == 0
    result = apt.download("hello", "world", options=options)
    assert result.returncode != 0, result
    assert len(blocked_lines(result, "world")) == 1 and not blocked_lines(result, "hello")
    assert "no evidence from rb0, rb1" in blocked_lines(result, "world")[0]
    assert {d["name"]: d["verdict"] for d in world.decisions()} == {"hello": "accepted", "world": "blocked"}
    assert (repo.directory / world_pkg.filename).exists(), "a file:// original must never be deleted"


# -- blocked ------------------------------------------------------------------------


def test_tampered_deb_with_regenerated_index_is_blocked(world: World, apt: AptEnv):
    hello = world.package("hello", "2:1.0-1", source="hellosrc")
    other = world.package("other")
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]
    for rb in rbs:
        world.attest(rb, hello)
        world.attest(rb, other)
    evil = world.tampered(hello)
    repo = world.repo([evil, other])  # the index now lists the tampered file's hashes
    result = fetch(apt, repo.http, world.policy(rbs, threshold=2), "hello", "other")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "rebuildgate: hello 2:1.0-1 (all): blocked: 0 votes (2 required)" in line
    assert "2 conflicting (max 0)" in line and "rb0 attests sha256" in line and "rb1 attests" in line
    assert apt.downloaded() == ["other_1.0-1_all.deb"]  # no trace of hello, not even in partial/
    blocked = [d for d in world.decisions() if d["name"] == "hello"]
    assert blocked and blocked[0]["verdict"] == "blocked" and blocked[0]["sha256"] == evil.sha256


def test_too_few_votes_down_404_slow(world: World, apt: AptEnv):
    """One good vote of three needed; the others are down, have nothing, or are too slow."""
    hello = world.package("hello")
    repo = world.repo([hello])
    good, missing, slow = (world.rebuilder(n) for n in ("good", "missing", "slow"))
    down = world.rebuilder("down", serve=False)
    for rb in (good, slow, down):
        world.attest(rb, hello)
    slow.server.fault = Fault.delay(30)
    policy = world.policy([good, missing, slow, down], threshold=2,
                          fetch={"connect_timeout": 1, "read_timeout": 1.5, "deadline": 3},
                          urls={"down": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    result = fetch(apt, repo.http, policy, "hello")
    assert time.monotonic() - started < 25
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "blocked: 1 vote (2 required) from good" in line
    assert "no evidence from missing" in line
    assert "slow:" in line and "down:" in line
    assert apt.downloaded() == []


@pytest.mark.parametrize("max_conflicts, allowed", [(0, False), (1, True)])
def test_m_agree_one_conflicts(world: World, apt: AptEnv, max_conflicts: int, allowed: bool):
    hello = world.package("hello")
    repo = world.repo([hello])
    rbs = [world.rebuilder(f"rb{i}") for i in range(3)]
    world.attest(rbs[0], hello)
    world.attest(rbs[1], hello)
    world.attest(rbs[2], hello, digest_of=b"what rb2 built\n")
    result = fetch(apt, repo.http, world.policy(rbs, threshold=2, max_conflicts=max_conflicts), "hello")
    if allowed:
        assert result.returncode == 0, result
        assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    else:
        assert result.returncode == 100, result
        [line] = blocked_lines(result, "hello")
        assert "blocked: 2 votes (2 required)" in line and "1 conflicting (max 0): rb2 attests sha256" in line
        assert apt.downloaded() == []
    [decision] = world.decisions()
    assert decision["conflict_count"] == 1 and decision["vote_count"] == 2


def test_link_for_other_package_or_version_gives_no_vote(world: World, apt: AptEnv):
    hello = world.package("hello", "1.0-2")
    older = world.package("hello", "1.0-1", outdir="older")
    bystander = world.package("bystander")
    repo = world.repo([hello])
    right, other_version, other_package = (world.rebuilder(n) for n in ("right", "oldver", "otherpkg"))
    world.attest(right, hello)
    # at hello's URL, a valid link for hello 1.0-1 (another file name)...
    world.attest(other_version, older, source="hello", version="1.0-2")
    # ... and one whose product is another package, with hello's digest
    world.attest(other_package, bystander, digest_of=hello.data, source="hello", version="1.0-2")
    result = fetch(apt, repo.http, world.policy([right, other_version, other_package], threshold=2), "hello")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "blocked: 1 vote (2 required) from right" in line
    [decision] = world.decisions()
    assert decision["votes"] == ["right"] and decision["conflict_count"] == 0


def test_audit_mode_lets_it_through_and_logs(world: World, apt: AptEnv):
    hello = world.package("hello")
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    repo = world.repo([world.tampered(hello)])
    result = fetch(apt, repo.http, world.policy([rb], threshold=1, mode="audit"), "hello")
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    [warning] = [line for line in result.output.splitlines() if line.startswith("W:") and "rebuildgate" in line]
    assert "hello 1.0-1 (all): blocked, allowed by audit mode: 0 votes (1 required)" in warning
    [decision] = world.decisions()
    assert decision["verdict"] == "blocked" and decision["allowed"] is True
    assert decision["relaxed_by"] == "audit mode"


def test_many_packages_are_verified_concurrently(world: World, apt: AptEnv):
    """20 packages, 3 rebuilders answering after 0.4 s each: sequential checks
    would take 24 s; concurrent ones a little more than 2 pipeline rounds."""
    pkgs = [world.package(f"pkg{i:02d}") for i in range(20)]
    repo = world.repo(pkgs)
    rbs = [world.rebuilder(f"rb{i}", latency=0.4) for i in range(3)]
    for rb in rbs:
        for p in pkgs:
            world.attest(rb, p)
    policy = world.policy(rbs, threshold=3, fetch={"max_workers": 64})
    apt.sources([flat_source(repo.http)])
    assert apt.update(options=policy_opt(policy)).returncode == 0
    result = apt.download(*[p.name for p in pkgs], options=policy_opt(policy))
    assert result.returncode == 0, result
    assert len(apt.downloaded()) == 20
    assert result.seconds < 8, f"verification looks sequential: {result.seconds:.1f}s"


def test_redirected_download_is_still_gated(world: World, apt: AptEnv):
    """The repo redirects the .deb: apt re-queues the new URI, still under rebuildgate+."""
    hello = world.package("hello")
    rb = world.rebuilder("rb0")
    repo = world.repo([world.tampered(hello)])
    (repo.directory / "moved").mkdir()
    (repo.directory / hello.filename).rename(repo.directory / "moved" / hello.filename)
    repo.server.faults[f"/./{hello.filename}"] = Fault.redirect(f"/moved/{hello.filename}")
    world.attest(rb, hello)
    result = fetch(apt, repo.http, world.policy([rb], threshold=1), "hello")
    assert result.returncode == 100, result
    assert any("rebuildgate+http://" in l and "/moved/" in l for l in blocked_lines(result, "hello")), result
    assert apt.downloaded() == []


# -- failures of the method itself: clear, one line, no hang -----------------------


@pytest.mark.parametrize("case", ["missing", "invalid-toml", "bad-key", "typo-item", "bad-debug"])
def test_configuration_errors_block_clearly(world: World, apt: AptEnv, case: str):
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    policy = world.policy([rb], threshold=1)
    options: dict[str, str] = {}
    expected = "policy error"
    if case == "missing":
        policy = world.base / "nope.toml"
        expected = "policy file does not exist"
    elif case == "invalid-toml":
        policy.write_text("threshold = [\n")
    elif case == "bad-key":
        rb.key.public_pem.write_text("not a key\n")
        expected = "cannot load key file"
    elif case == "typo-item":
        options["Rebuildgate::Polcy"] = "/etc/x"
        expected = "unknown apt option Rebuildgate::Polcy"
    elif case == "bad-debug":
        options["Rebuildgate::Debug"] = "banana"
        expected = "Rebuildgate::Debug must be true or false"
    result = fetch(apt, repo.http, policy, "hello", **options)
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert expected in line and line.count("\n") == 0
    assert result.seconds < 20
    assert apt.downloaded() == []


def test_odd_config_items_do_not_break_the_method(world: World, apt: AptEnv):
    """Items apt may send (unknown, empty, odd characters, apt-transport-in-toto's
    crashing LogLevel) are ignored; the package still passes."""
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    odd = {"APT::Intoto::LogLevel": "10", "Acquire::http::Proxy::127.0.0.1": "DIRECT", "Foo::Bar": "%0a\"'=;",
           "Debug::Acquire::http": "true", "Rebuildgate::Debug": "true", "Unicode::Ünïcödé": "välüe"}
    result = fetch(apt, repo.http, world.policy([rb], threshold=1), "hello", **odd)
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]


def test_policy_item_with_newline_gives_one_line(world: World, apt: AptEnv):
    hello = world.package("hello")
    repo = world.repo([hello])
    # apt quotes the newlines as %0a in 601; the method decodes them into the path
    result = fetch(apt, repo.http, "/tmp/no\nsuch\npolicy", "hello")
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "policy error: /tmp/no such policy: policy file does not exist" in line


# -- privileges -----------------------------------------------------------------------


def test_network_and_parsing_run_as_sandbox_user(world: World, apt: AptEnv):
    """The policy (0600) and keys are read as root, the evidence as _apt: a
    file:// rebuilder only root can read gives no vote, and the debug log
    shows the uid that verifies."""
    hello = world.package("hello")
    repo = world.repo([hello])
    public, private = world.rebuilder("public"), world.rebuilder("rootonly", serve=False)
    world.attest(public, hello)
    world.attest(private, hello)
    private.root.chmod(0o700)
    policy = world.policy([public, private], threshold=2)
    assert stat.S_IMODE(policy.stat().st_mode) == 0o600
    result = fetch(apt, repo.http, policy, "hello", **{"Rebuildgate::Debug": "true"})
    assert result.returncode == 100, result
    [line] = blocked_lines(result, "hello")
    assert "blocked: 1 vote (2 required) from public" in line and "rootonly" in line
    assert "running as uid 42 (_apt)" in result.stderr
    assert "hello 1.0-1 (all) (source hello" in result.stderr and "as uid 42 (_apt)" in result.stderr
    # the decision log is root's file, opened before the drop
    assert world.decisions()[0]["verdict"] == "blocked" and world.log.stat().st_uid == 0

    # apt's own sandbox setting is followed: as root, the same rebuilder votes
    apt.clean()
    result = apt.download("hello", options={**policy_opt(policy), "APT::Sandbox::User": "root",
                                            "Rebuildgate::Debug": "true"})
    assert result.returncode == 0, result
    assert "running as uid 0 (root)" in result.stderr


def test_apt_user_unreachable_dirs_make_apt_and_method_stay_root(world: World, apt_factory, tmp_path):
    """When _apt cannot reach the download dir, apt itself switches the sandbox
    user to root (with a warning) and the method follows the same setting."""
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    env = AptEnv(tmp_path / "private-apt")  # under pytest's 0700 tmp dir
    result = fetch(env, repo.http, world.policy([rb], threshold=1), "hello", **{"Rebuildgate::Debug": "1"})
    assert result.returncode == 0, result
    assert "unsandboxed as root" in result.stderr
    assert "running as uid 0 (root)" in result.stderr
