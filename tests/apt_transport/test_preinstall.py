"""The pre-install hook through real apt-get and dpkg: every .deb checked right before dpkg.

Each test installs the hook as ``python -m rebuildgate.apt.install`` does
(its snippet in the private ``Dir::Etc::Parts``), lets dpkg install into a
throwaway root (harness.AptEnv(target=True, hook=True)) and then looks at
that root: a blocked package must not be unpacked at all.  The first three
tests are paths the method never sees; without the hook each of them
installs the package.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.apt_transport.harness import WITHOUT_HOST_POLICY, AptEnv, flat_source
from tests.apt_transport.world import Package, World
from tests.support.halts import HaltTeam
from tests.support.packages import INSTALL_DIR

pytestmark = pytest.mark.timeout(150)


def make_apt(apt_factory, name: str = "apt", **options: str) -> AptEnv:
    env: AptEnv = apt_factory(name, target=True, hook=True, options=options or None)
    assert env.target is not None and env.hook is not None
    return env


def installed(apt: AptEnv, name: str) -> bool:
    """Did dpkg unpack *name* into the throwaway root (status or files)?"""
    assert apt.target is not None
    return (f"Package: {name}\n" in apt.status.read_text()
            or (apt.target / INSTALL_DIR / name).exists()
            or any((apt.target / "var/lib/dpkg/info").glob(f"{name}.*")))


def hook_lines(result, prefix: str = "E: rebuildgate:") -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith(prefix)]


def assert_hook_stopped_apt(result, apt: AptEnv, name: str, status: int = 1) -> str:
    """apt ended before dpkg with the hook's status; returns the hook's one line."""
    assert result.returncode == 100, result
    assert f"E: Sub-process {apt.hook} returned an error code ({status})" in result.output, result
    assert "Unpacking" not in result.stdout and not installed(apt, name)
    [line] = hook_lines(result)
    return line


def same_size_tampered(world: World, pkg: Package) -> Package:
    """Other bytes of exactly the same size: apt reuses a cached archive on its size alone."""
    honest = f"{pkg.name} {pkg.version}\n".encode()  # World.package's default payload
    for payload in (honest.upper(), honest.replace(b"1", b"7"), honest[-2::-1] + b"\n"):
        bad = world.tampered(pkg, payload)
        if bad.deb.stat().st_size == pkg.deb.stat().st_size and bad.data != pkg.data:
            return bad
    raise AssertionError("no same-size variant of the package could be built")


# -- paths the method never sees ----------------------------------------------------------


def test_cached_download_then_halt_is_blocked_before_dpkg(world: World, apt_factory):
    """--download-only (as unattended-upgrades does), then a K-signed halt, then install from the cache."""
    hello, repo, rbs = world.attested("hello", "1:1.0-1", source="hello-src")
    team = HaltTeam(world.base / "team")
    policy = world.policy(rbs, threshold=2, tables=team.tables(), arrays=team.arrays())
    team.publish()
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(policy)})
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.download("hello")
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1%3a1.0-1_all.deb"]

    team.publish(team.statement("alice", "bob", packages=["hello-src"]))
    served = len(repo.server.requests)
    result = apt.install("hello")
    line = assert_hook_stopped_apt(result, apt, "hello")
    assert len(repo.server.requests) == served  # installed from the cache: the method was never asked
    assert line.startswith("E: rebuildgate: hello 1:1.0-1 (all): blocked: halted by H-1 (reason for H-1; "
                           "signed by alice, bob); 2 votes (2 required)")
    assert line.endswith(f"[{apt.archives}/hello_1%3a1.0-1_all.deb]")
    last = world.decisions()[-1]  # the hook logs its verdict as the method does
    assert (last["name"], last["verdict"], [h["id"] for h in last["halts"]]) == ("hello", "blocked", ["H-1"])


@pytest.mark.parametrize("gate_unlisted", [True, False])
def test_local_deb_is_judged_by_gate_unlisted(world: World, apt_factory, gate_unlisted: bool):
    """`apt-get install ./x.deb` of a file no rebuilder attests: it has no source, so gate_unlisted decides."""
    local = world.package("localpkg", "2.0-1", outdir="local")
    rb = world.rebuilder("rb0")
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy([rb], 1, gate_unlisted=gate_unlisted))})
    result = apt.install(str(local.deb))
    if gate_unlisted:
        line = assert_hook_stopped_apt(result, apt, "localpkg")
        assert "localpkg 2.0-1 (all): blocked: 0 votes (1 required); no evidence from rb0" in line
        assert line.endswith(f"[{local.deb}]")
    else:
        assert result.returncode == 0, result
        assert installed(apt, "localpkg") and not hook_lines(result)
    assert [d["verdict"] for d in world.decisions()] == ["blocked" if gate_unlisted else "accepted"]


def test_cached_file_swapped_for_one_of_the_same_size_is_blocked(world: World, apt_factory):
    """apt reuses a cached archive when only its size matches: the hook compares it with the index."""
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy([rb], threshold=1))})
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    assert apt.download("hello").returncode == 0
    bad = same_size_tampered(world, hello)
    cached = apt.archives / hello.filename
    cached.write_bytes(bad.data)

    result = apt.install("hello")
    line = assert_hook_stopped_apt(result, apt, "hello")
    assert "Get:" not in result.stdout  # apt took the swapped file as it was
    assert (f"hello 1.0-1 (all): blocked: {cached} has sha256 {bad.sha256}, but the index of "
            f"rebuildgate+{repo.http} lists {hello.sha256} for this version") in line
    assert "apt-get clean" in line


def test_plain_mirror_after_the_method_refused_is_blocked(world: World, apt_factory):
    """The method refuses; apt fetches the same file from a plain mirror listed too: the hook still gates it."""
    hello = world.package("hello")
    gated, plain = world.repo([hello], name="gated"), world.repo([hello], name="plain")
    rb = world.rebuilder("rb0")  # attests nothing
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy([rb], threshold=1))})
    apt.sources([flat_source(gated.http), flat_source(plain.http, "")])
    assert apt.update().returncode == 0
    result = apt.install("hello")
    assert f"Get:1 {plain.http.rstrip('/')} ./ hello 1.0-1" in result.stdout, result  # apt's fallback
    line = assert_hook_stopped_apt(result, apt, "hello")
    assert "hello 1.0-1 (all): blocked: 0 votes (1 required); no evidence from rb0" in line


def test_python_apt_commit_is_checked(world: World, apt_factory):
    """python-apt's Cache.commit() (unattended-upgrades) runs the hook too."""
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    team = HaltTeam(world.base / "team")
    policy = world.policy([rb], threshold=1, tables=team.tables(), arrays=team.arrays())
    team.publish()
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(policy)})
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    assert apt.download("hello").returncode == 0
    team.publish(team.statement("alice", "bob"))
    script = ("import apt, sys\n"
              "cache = apt.Cache()\n"
              "cache['hello'].mark_install()\n"
              "try:\n"
              "    cache.commit()\n"
              "except SystemError as e:\n"
              "    print('commit failed:', e)\n"
              "    sys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", script], env=apt.env(), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 3, proc
    output = proc.stdout + proc.stderr
    assert "E: rebuildgate: hello 1.0-1 (all): blocked: halted by H-1" in output, output
    assert not installed(apt, "hello")


# -- what the hook leaves alone, and how it fails ------------------------------------------


def test_plain_http_source_is_left_alone(world: World, apt_factory):
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")  # attests nothing: a gated hello would be blocked
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy([rb], threshold=1)),
                                   "Rebuildgate::Debug": "true"})
    apt.sources([flat_source(repo.http, "")])
    assert apt.update().returncode == 0
    result = apt.install("hello")
    assert result.returncode == 0, result
    assert installed(apt, "hello")
    assert f"hello 1.0-1 (all): left alone (plain source {repo.http})" in result.stderr
    assert not hook_lines(result, "E:") and not hook_lines(result, "W:")
    assert world.decisions() == [] and rb.server.requests == []


def test_no_policy_file_lets_apt_work_with_one_line(world: World, apt_factory):
    """Installing rebuildgate must not break apt before it is configured: one line, nothing checked."""
    hello = world.package("hello")
    local = world.package("localpkg", outdir="local")
    repo = world.repo([hello])
    apt = make_apt(apt_factory)
    apt.sources([flat_source(repo.http, "")])
    assert apt.update().returncode == 0
    result = apt.run("install", "hello", str(local.deb), prefix=WITHOUT_HOST_POLICY)
    assert result.returncode == 0, result
    assert installed(apt, "hello") and installed(apt, "localpkg")
    assert [line for line in result.output.splitlines() if "rebuildgate" in line] == [
        "W: rebuildgate: no policy file /etc/rebuildgate/policy.toml: packages are not checked before dpkg "
        "(write the policy to turn rebuildgate on)"]


@pytest.mark.parametrize("case", ["invalid-toml", "unknown-key", "missing-named-file", "typo-item"])
def test_broken_policy_blocks_before_dpkg_with_one_line(world: World, apt_factory, case: str):
    local = world.package("localpkg", outdir="local")
    rb = world.rebuilder("rb0")
    world.attest(rb, local)
    policy = world.policy([rb], threshold=1)
    options = {"Rebuildgate::Policy": str(policy)}
    if case == "invalid-toml":
        policy.write_text("threshold = [\n")
        expected = f"rebuildgate: policy error: {policy}: "
    elif case == "unknown-key":
        policy.write_text(policy.read_text().replace("threshold = 1", "threshold = 1\nthreshhold = 2"))
        expected = f"rebuildgate: policy error: {policy}: threshhold: "
    elif case == "missing-named-file":
        options["Rebuildgate::Policy"] = str(world.base / "nope.toml")
        expected = f"rebuildgate: policy error: {world.base / 'nope.toml'}: policy file does not exist"
    else:
        options["Rebuildgate::Polcy"] = "/etc/x"
        expected = "rebuildgate: apt configuration error: unknown apt option Rebuildgate::Polcy"
    apt = make_apt(apt_factory, **options)
    result = apt.install(str(local.deb))
    line = assert_hook_stopped_apt(result, apt, "localpkg", status=2)
    assert line.startswith(f"E: {expected}"), line
    assert result.seconds < 20


# -- what passes -----------------------------------------------------------------------------


def test_attested_packages_install_through_the_hook(world: World, apt_factory):
    """Identity comes from the file: evidence under the source name and epoch-less version."""
    lib = world.package("libfoo1", "2:1.5-2", source="foo")
    local = world.package("localpkg", "1:3.0-1", source="localsrc", outdir="local")
    repo = world.repo([lib])
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]
    for rb in rbs:
        world.attest(rb, lib)
        world.attest(rb, local)
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy(rbs, threshold=2))})
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.install("libfoo1", str(local.deb))
    assert result.returncode == 0, result
    assert installed(apt, "libfoo1") and installed(apt, "localpkg")
    assert not hook_lines(result, "E:") and not hook_lines(result, "W:")
    # the method judged libfoo1 at download, the hook both files before dpkg
    seen = sorted((d["name"], d["source"], d["version"], d["repo"], d["verdict"]) for d in world.decisions())
    repo_id = repo.http.split("//", 1)[1].rstrip("/")
    assert seen == [("libfoo1", "foo", "2:1.5-2", repo_id, "accepted")] * 2 + [
        ("localpkg", "localsrc", "1:3.0-1", None, "accepted")]
    for rb in rbs:
        assert "/sources/localsrc/3.0-1/metadata" in rb.server.requests


def test_audit_mode_lets_it_through_with_a_warning(world: World, apt_factory):
    local = world.package("localpkg", outdir="local")
    rb = world.rebuilder("rb0")
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy([rb], threshold=1, mode="audit"))})
    result = apt.install(str(local.deb))
    assert result.returncode == 0, result
    assert installed(apt, "localpkg") and not hook_lines(result, "E:")
    [line] = hook_lines(result, "W: rebuildgate:")
    assert "localpkg 1.0-1 (all): blocked, allowed by audit mode: 0 votes (1 required)" in line


def test_reinstalling_an_installed_version_is_checked_not_an_internal_error(world: World, apt_factory):
    """dpkg's status file lists the installed version without a SHA256: reading
    apt's records for it once raised KeyError, so `apt-get install --reinstall`
    stopped with "internal error in the pre-install check"."""
    pkg, repo, rbs = world.attested("again")
    apt = make_apt(apt_factory, **{"Rebuildgate::Policy": str(world.policy(rbs, threshold=2))})
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    assert apt.install("again").returncode == 0
    result = apt.install("--reinstall", "again")
    assert result.returncode == 0, result
    assert not hook_lines(result, "E:") and "internal error" not in result.output
    # the method and the hook at the install; the hook alone at the reinstall (apt reuses its cached copy)
    assert [d["verdict"] for d in world.decisions() if d["name"] == "again"] == ["accepted"] * 3
