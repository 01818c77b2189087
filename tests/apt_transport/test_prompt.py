"""The pre-prompt hook through real apt-get and apt: the transaction judged before any download.

Each test installs both hooks as ``python -m rebuildgate.apt.install`` does
(harness.AptEnv(prompt=True): one snippet in the private
``Dir::Etc::Parts``) and counts what reached the repository server: a
transaction the hook blocks must not fetch a single .deb.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.apt_transport.harness import AptEnv, flat_source
from tests.apt_transport.world import Package, Repo, World
from tests.support.halts import HaltTeam
from tests.support.keys import make_key

pytestmark = pytest.mark.timeout(150)

EXIT_BLOCKED = 10  # rebuildgate.apt.prompt.EXIT_BLOCKED


def make_apt(apt_factory, policy, name: str = "apt", options: dict[str, str] | None = None, **kw) -> AptEnv:
    """A private apt with both hooks; *options* go into its APT_CONFIG (the hook sees no -o items)."""
    env: AptEnv = apt_factory(name, target=True, prompt=True,
                              options={"Rebuildgate::Policy": str(policy), **(options or {})}, **kw)
    assert env.prompt is not None
    return env


def debs_fetched(repo: Repo) -> list[str]:
    assert repo.server is not None
    return [r.rsplit("/", 1)[-1] for r in repo.server.requests if r.endswith(".deb")]


def assert_blocked_before_download(result, apt: AptEnv, repo: Repo) -> list[str]:
    """apt stopped at the hook, nothing was fetched; returns the hook's lines (E: line and table)."""
    assert result.returncode == 100, result
    # apt names the command of the snippet, which runs the launcher only while it exists
    assert f"E: Sub-process [ ! -e {apt.prompt} ] || {apt.prompt} returned an error code ({EXIT_BLOCKED})" \
        in result.output, result
    assert debs_fetched(repo) == [] and apt.downloaded() == []
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("E: rebuildgate blocked"))
    end = next(i for i, line in enumerate(lines) if line.startswith("E: Sub-process"))
    return lines[start:end]


def first_column(lines: list[str]) -> str:
    """The table's package column, its wrapped pieces joined (rows start with two spaces, reasons four)."""
    return "".join(line.split()[0] for line in lines
                   if line.startswith("  ") and not line.startswith("   ") and "PACKAGE" not in line)


def two_packages(world: World, readable_keys: bool = False) -> tuple[Package, Package, Repo, list]:
    """good (attested by rb0 and rb1) and bad (rb1 attests other bytes) in one served repository.

    *readable_keys*: the rebuilders' keys in the world's directory, which any user can read."""
    good = world.package("good", "1.0-1")
    bad = world.package("bad", "2:3.0-1", source="badsrc")
    repo = world.repo([good, bad])
    rbs = [world.rebuilder(name, key=make_key(world.base / "keys", "ed25519", name) if readable_keys else None)
           for name in ("rb0", "rb1")]
    for rb in rbs:
        world.attest(rb, good)
    world.attest(rbs[0], bad)
    world.attest(rbs[1], bad, digest_of=b"other bytes")
    return good, bad, repo, rbs


@pytest.mark.parametrize("program", ["/usr/bin/apt-get", "/usr/bin/apt"])
def test_blocked_before_download_with_the_table(world: World, apt_factory, program: str):
    good, bad, repo, rbs = two_packages(world)
    apt = make_apt(apt_factory, world.policy(rbs, threshold=2))
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.run("install", "-y", "good", "bad", program=program)
    lines = assert_blocked_before_download(result, apt, repo)
    text = " ".join(" ".join(lines).split())
    assert text.startswith(f"E: rebuildgate blocked 1 of 2 package(s) before download (policy "
                           f"{world.base}/policy.toml): PACKAGE SHA256 VOTES CONFLICTS FAILING REBUILDERS REASON "
                           f"bad 2:3.0-1 (all) {bad.sha256[:16]} 1/2 1 (max 0) rb1 (conflict) "
                           f"1 vote (2 required) from rb0; 1 conflicting (max 0): rb1 attests sha256"), text
    assert text.endswith(f"Nothing was downloaded. Decision log: {world.log}")
    assert "good" not in text
    assert all(len(line) <= 80 for line in lines)
    assert "Do you want to continue" not in result.stdout


def test_long_names_fit_80_columns(world: World, apt_factory):
    name = "a-package-with-a-really-very-long-name-that-goes-on-and-on-beyond-any-column"
    pkg = world.package(name, "1:10.20.30-4+deb12u5~bpo11+1")
    repo = world.repo([pkg])
    rbs = [world.rebuilder("rebuilder-with-a-long-name-0"), world.rebuilder("rebuilder-with-a-long-name-1")]
    apt = make_apt(apt_factory, world.policy(rbs, threshold=2))
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    lines = assert_blocked_before_download(apt.install(name), apt, repo)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert first_column(lines).startswith(name)  # wrapped, not cut


def test_everything_attested_installs_and_the_hook_prints_nothing(world: World, apt_factory):
    good = world.package("good", "1.0-1")
    repo = world.repo([good])
    rbs = [world.rebuilder("rb0"), world.rebuilder("rb1")]
    for rb in rbs:
        world.attest(rb, good)
    apt = make_apt(apt_factory, world.policy(rbs, threshold=2))
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.install("good")
    assert result.returncode == 0, result
    assert "rebuildgate" not in result.stderr
    assert debs_fetched(repo) == ["good_1.0-1_all.deb"]


def test_download_only_and_upgrade_and_dist_upgrade_are_blocked(world: World, apt_factory):
    old = world.package("tool", "1.0-1")
    repo = world.repo([old])
    rbs = [world.rebuilder("rb0")]
    world.attest(rbs[0], old)
    apt = make_apt(apt_factory, world.policy(rbs, threshold=1))
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    assert apt.install("tool").returncode == 0

    result = apt.download("tool", "--reinstall")  # reinstall: nothing new, yet a download
    assert result.returncode == 0, result

    new = world.package("tool", "2.0-1")  # not attested
    repo = world.repo([new])  # the same directory, now with 2.0-1 only (a new server)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    for args in (["install", "--download-only", "tool"], ["upgrade"], ["dist-upgrade"]):
        apt.clean()
        lines = assert_blocked_before_download(apt.run(*args), apt, repo)
        assert any(line.split()[:3] == ["tool", "2.0-1", "(all)"] for line in lines), args


def test_removal_only_is_never_blocked(world: World, apt_factory):
    tool = world.package("tool", "1.0-1")
    repo = world.repo([tool])
    rb = world.rebuilder("rb0")
    world.attest(rb, tool)
    policy = world.policy([rb], threshold=1)
    apt = make_apt(apt_factory, policy)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    assert apt.install("tool").returncode == 0
    world.policy([rb], threshold=5)  # now nothing could pass
    result = apt.run("remove", "tool")
    assert result.returncode == 0, result
    assert "rebuildgate" not in result.stderr


def test_mixed_gated_and_plain_sources(world: World, apt_factory):
    """Only the package of the rebuildgate+ entry is judged; the plain one installs unchecked."""
    gated = world.package("gated", "1.0-1")
    plain = world.package("plainpkg", "1.0-1")
    gated_repo = world.repo([gated], name="gated")
    plain_repo = world.repo([plain], name="plain")
    rb = world.rebuilder("rb0")
    apt = make_apt(apt_factory, world.policy([rb], threshold=1))
    apt.sources([flat_source(gated_repo.http), flat_source(plain_repo.http, scheme="")])
    assert apt.update().returncode == 0
    assert apt.install("plainpkg").returncode == 0
    apt.clean()
    result = apt.install("gated")
    lines = assert_blocked_before_download(result, apt, gated_repo)
    assert lines[0].startswith("E: rebuildgate blocked 1 of 1 package(s)")
    assert not any("plainpkg" in line for line in lines)


def test_hook_that_cannot_reach_rebuilders_in_time_leaves_it_to_the_method(world: World, apt_factory):
    """The hook's own deadline (1 s) passes: one W: line, apt goes on, the method verifies (no hang)."""
    good = world.package("good", "1.0-1")
    repo = world.repo([good])
    rb = world.rebuilder("rb0", latency=2.5)
    world.attest(rb, good)
    apt = make_apt(apt_factory, world.policy([rb], threshold=1), options={"Rebuildgate::Prompt::Deadline": "1"})
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    started = time.monotonic()
    result = apt.install("good")
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result
    [line] = [line for line in result.stderr.splitlines() if "rebuildgate" in line]
    assert line == ("W: rebuildgate: no verdict before download within the hook's time limit for 1 package(s) "
                    "(rebuilders slow or unreachable); the download check decides")
    assert debs_fetched(repo) == ["good_1.0-1_all.deb"]


#: A stand-in for the hook's program that answers apt's hello and then crashes
#: (a bug past the handshake: Python exits 1 with a traceback).
CRASHING_PROGRAM = """#!/usr/bin/python3
import os, socket
s = socket.socket(fileno=int(os.environ["APT_HOOK_SOCKET"]))
s.recv(65536)
s.sendall(b'{"jsonrpc":"2.0","id":0,"result":{"version":"0.1"}}\\n\\n')
raise RuntimeError("boom")
"""


def test_hook_that_crashes_leaves_it_to_the_method_which_blocks(world: World, apt_factory):
    good, bad, repo, rbs = two_packages(world)
    program = world.base / "crashing-prompt"
    program.write_text(CRASHING_PROGRAM)
    program.chmod(0o755)
    apt = make_apt(apt_factory, world.policy(rbs, threshold=2), prompt_program=program)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.install("bad")
    assert result.returncode == 100, result
    assert ("W: rebuildgate: the pre-prompt check failed (exit status 1); the download check decides"
            in result.stderr.splitlines())
    assert "rebuildgate: bad 2:3.0-1 (all): blocked: 1 vote (2 required)" in result.stderr  # the method's line
    assert "Failure running hook" not in result.output
    assert "Unpacking" not in result.stdout


def test_policy_that_does_not_load_warns_and_the_method_refuses(world: World, apt_factory):
    good, bad, repo, rbs = two_packages(world)
    policy = world.base / "broken.toml"
    policy.write_text("threshold = [\n")
    apt = make_apt(apt_factory, policy)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.install("good")
    assert result.returncode == 100, result
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("W: rebuildgate")]
    assert warning.startswith("W: rebuildgate: policy error: ") and str(policy) in warning
    assert warning.endswith("; the method refuses every package until it is fixed; the download check decides")
    assert "E: Failed to fetch" in result.stderr and "policy error" in result.stderr.split("E: Failed", 1)[1]


def test_not_root_reports_without_blocking(world: World, apt_factory):
    """`apt-get -s` as a normal user: the same table, as W: lines, and apt goes on."""
    good, bad, repo, rbs = two_packages(world, readable_keys=True)
    policy = world.policy(rbs, threshold=2)
    policy.chmod(0o644)  # the user must be able to read it to report anything
    apt = make_apt(apt_factory, policy)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.run("-s", "install", "good", "bad",
                     prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    assert result.returncode == 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("W: rebuildgate blocked 1 of 2 package(s) before download"), result
    assert any(line.split()[:3] == ["bad", "2:3.0-1", "(all)"] for line in lines), result.stderr
    assert "Not run as root: nothing is blocked here; the download check decides." in " ".join(
        " ".join(lines).split())
    assert not any(line.startswith("E:") for line in lines)
    assert "Inst bad" in result.stdout and debs_fetched(repo) == []


def test_local_deb_is_left_to_the_pre_install_check(world: World, apt_factory):
    local = world.package("localpkg", "2.0-1", outdir="local")
    rb = world.rebuilder("rb0")
    apt = make_apt(apt_factory, world.policy([rb], 1, gate_unlisted=True))
    result = apt.install(str(local.deb))
    assert result.returncode == 100, result
    assert f"E: Sub-process {apt.hook} returned an error code (1)" in result.output  # the pre-install hook
    assert "rebuildgate blocked" not in result.output  # the pre-prompt hook had nothing to judge
    assert "localpkg 2.0-1 (all): blocked: 0 votes (1 required)" in result.stderr


def test_method_reuses_what_the_hook_fetched(world: World, apt_factory):
    """The hook (root) fills the evidence cache; the method (_apt) reads it: 0 evidence requests of its own."""
    pkgs = [world.package(f"pkg{i}", "1.0-1") for i in range(3)]
    repo = world.repo(pkgs)
    rbs = [world.rebuilder("rb0"), world.rebuilder("rb1")]
    for rb in rbs:
        for pkg in pkgs:
            world.attest(rb, pkg)
    policy = world.policy(rbs, threshold=2, fetch={"cache_dir": str(world.base / "cache")})
    apt = make_apt(apt_factory, policy)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.install(*(p.name for p in pkgs))
    assert result.returncode == 0, result
    assert sorted(debs_fetched(repo)) == sorted(p.filename for p in pkgs)
    for rb in rbs:
        assert rb.server is not None
        asked = rb.server.requests
        assert asked and len(asked) == len(set(asked)), asked  # each document once: by the hook, not again
    decided = [(d["name"], d["verdict"]) for d in world.decisions()]
    assert decided.count(("pkg0", "accepted")) == 3  # the hook, the method, the pre-install hook
    # The method read them from the run's file; a detached child wrote them to the cache for later runs.
    assert [p.name for p in (world.base / "cache").glob("apt-run-*.docs")]
    deadline = time.monotonic() + 30
    while len([p for p in (world.base / "cache").iterdir() if len(p.name) == 64]) < len(pkgs) * len(rbs):
        assert time.monotonic() < deadline, "the hook's documents never reached the evidence cache"
        time.sleep(0.05)
    apt.clean()
    again = apt.run("install", "--reinstall", "--download-only", *(p.name for p in pkgs))
    assert again.returncode == 0, again
    assert sorted(apt.downloaded()) == sorted(p.filename for p in pkgs)
    assert all(len(rb.server.requests) == len(pkgs) for rb in rbs if rb.server)  # a later apt run: the cache


def test_a_halt_blocks_before_download(world: World, apt_factory):
    """Halts apply in the hook as everywhere (the library's verdict): named in the table."""
    hello, repo, rbs = world.attested("hello", "1:1.0-1", source="hello-src")
    team = HaltTeam(world.base / "team")
    policy = world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())
    team.publish(team.statement("alice", "bob", packages=["hello-src"]))
    apt = make_apt(apt_factory, policy)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    lines = assert_blocked_before_download(apt.install("hello"), apt, repo)
    text = " ".join(" ".join(lines).split())
    assert "hello 1:1.0-1 (all)" in text and "halted by H-1" in text and "2/2" in text, text


VERSION_RECORDS = """
import apt_pkg, json, sys
from rebuildgate.apt.records import AptRecords
apt_pkg.init_config()
records = AptRecords(lambda: None)
found = records.version_records("alpha", "amd64", "1.0-1", int(sys.argv[1]))
print(json.dumps(None if found is None else [[r.uri, r.sha256, r.filename, r.source] for r in found]))
"""


def test_version_records_need_apts_version_id(world: World, apt_factory):
    """The hook finds the version apt named only under the same id; else it leaves it to the method."""
    alpha = world.package("alpha", "1.0-1", source="alpha-src")
    repo = world.repo([alpha])
    apt = make_apt(apt_factory, world.policy([world.rebuilder("rb0")], threshold=1))
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0

    def lookup(version_id: int):
        done = subprocess.run([sys.executable, "-c", VERSION_RECORDS, str(version_id)], env=apt.env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert lookup(0) == [[f"rebuildgate+{repo.http}", alpha.sha256, alpha.filename, "alpha-src"]]
    assert lookup(7) is None
