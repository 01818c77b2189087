"""The issue's acceptance tests: real ``/usr/bin/dnf`` 4 with the plugin.

Each test gets a fresh installroot and cache (see harness.DnfSandbox); the
packages, repositories and rebuilders are built once (world.py).  "Not
downloaded" is checked twice: the repository server logged no GET of the
package, and the sandbox's dnf cache holds no .rpm.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.dnf_plugin.harness import DnfResult, DnfSandbox, hide_rebuildgate, host_state, old_intoto_on_path, rpm_requests
from tests.dnf_plugin.world import World
from tests.support.packages import sha256_file

pytestmark = pytest.mark.timeout(120)


def decisions(sandbox: DnfSandbox) -> list[dict]:
    """The decision log the policy of this sandbox points at."""
    assert sandbox.policy is not None
    path = sandbox.policy.parent / "decisions.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def blocked_row(result: DnfResult, nevra: str) -> str:
    """The table row dnf printed for *nevra* (fails if there is none)."""
    rows = [line for line in result.stderr.splitlines() if line.strip().startswith(nevra + " ")]
    assert rows, f"no table row for {nevra}\n{result}"
    return rows[0]


def assert_blocked_before_download(result: DnfResult, sandbox: DnfSandbox, world: World,
                                   since: int, name: str) -> None:
    assert result.returncode == 1, result
    assert "Error: rebuildgate blocked" in result.stderr, result
    assert "before download" in result.stderr and "Nothing was downloaded or installed." in result.stderr
    assert "Downloading Packages" not in result.stdout, result
    assert not any(n.startswith(f"{name}-") for n in sandbox.installed())
    assert not [r for r in rpm_requests(world.repo_server.requests[since:]) if f"/{name}-" in r]
    assert sandbox.cached_rpms() == []


def test_accepted_package_is_installed_without_touching_the_host(world: World, sandbox_dir: Path) -> None:
    before = host_state()
    sandbox = world.sandbox(sandbox_dir)
    result = sandbox.run("install", "hello")
    assert result.returncode == 0, result
    assert "Complete!" in result.stdout
    assert sandbox.installed() == {"hello-1.0-1.noarch"}
    [entry] = decisions(sandbox)
    assert entry["verdict"] == "accepted" and entry["allowed"] is True
    assert entry["votes"] == ["rb1", "rb2", "rb3"]
    assert entry["sha256"] == sha256_file(world.files["hello"])  # the repository's checksum
    assert entry["repo"] == "gated" and entry["artifact"] == "hello-1.0-1.noarch.rpm"
    assert host_state() == before


def test_tampered_package_is_blocked_and_not_downloaded(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "evil")
    assert_blocked_before_download(result, sandbox, world, since, "evil")
    row = blocked_row(result, "evil-1.0-1.noarch")
    assert "0/2" in row and "3 (max 0)" in row
    assert "rb1 (conflict)" in row and "rb2 (conflict)" in row and "rb3 (conflict)" in row
    [entry] = decisions(sandbox)
    assert entry["verdict"] == "blocked" and entry["sha256"] == sha256_file(world.files["evil"])


def test_too_few_votes_block(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "lonely", "hello")  # hello is fine, but all-or-nothing
    assert_blocked_before_download(result, sandbox, world, since, "lonely")
    assert "blocked 1 of 2 package(s)" in result.stderr
    row = blocked_row(result, "lonely-1.0-1.noarch")
    assert "1/2" in row and "rb2 (missing)" in row and "rb3 (missing)" in row
    assert "hello" not in " ".join(sandbox.installed())
    assert not rpm_requests(world.repo_server.requests[since:])


def test_conflicting_rebuilder_blocks_until_the_policy_tolerates_it(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "disputed")
    assert_blocked_before_download(result, sandbox, world, since, "disputed")
    row = blocked_row(result, "disputed-1.0-1.noarch")
    assert "2/2" in row and "1 (max 0)" in row and "rb3 (conflict)" in row
    assert "rb1" not in row.split("rb3 (conflict)")[0]  # voters are not "failing"

    world.policy(sandbox.policy, max_conflicts=1)
    result = sandbox.run("install", "disputed")
    assert result.returncode == 0, result
    assert sandbox.installed() == {"disputed-1.0-1.noarch"}


def test_unreachable_rebuilders_block(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    dead = {rb.name: "http://127.0.0.1:9" for rb in world.rebuilders}  # discard port: refused
    world.policy(sandbox.policy, urls=dead)
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "hello")
    assert_blocked_before_download(result, sandbox, world, since, "hello")
    assert "rb1 (fetch-error)" in blocked_row(result, "hello-1.0-1.noarch")


def test_epoch_and_source_name_locate_the_evidence(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    since = {rb.name: len(rb.server.requests) for rb in world.rebuilders}
    result = sandbox.run("install", "epochal", "libsplit")
    assert result.returncode == 0, result
    assert sandbox.installed() == {"epochal-3:1.0-1.noarch", "libsplit-1.0-1.noarch"}
    for rb in world.rebuilders:
        asked = rb.server.requests[since[rb.name]:]
        assert sorted(asked) == ["/sources/epochal/1.0-1/metadata", "/sources/splitsrc/1.0-1/metadata"]
    by_name = {e["name"]: e for e in decisions(sandbox)}
    assert by_name["epochal"]["version"] == "3:1.0-1" and by_name["epochal"]["votes"] == ["rb1", "rb2", "rb3"]
    assert by_name["libsplit"]["source"] == "splitsrc"


def test_upgrade_distro_sync_downgrade_reinstall(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    assert sandbox.run("install", "up-1.0-1").returncode == 0
    assert sandbox.installed() == {"up-1.0-1.noarch"}

    since = len(world.repo_server.requests)
    result = sandbox.run("upgrade")  # the newest, 1.2-1, is attested by nobody
    assert_blocked_before_download(result, sandbox, world, since, "up-1.2")
    assert "0/2" in blocked_row(result, "up-1.2-1.noarch")
    assert sandbox.installed() == {"up-1.0-1.noarch"}

    assert sandbox.run("upgrade", "up-1.1-1").returncode == 0
    assert sandbox.installed() == {"up-1.1-1.noarch"}

    result = sandbox.run("distro-sync")
    assert result.returncode == 1 and "up-1.2-1.noarch" in result.stderr, result
    assert sandbox.installed() == {"up-1.1-1.noarch"}

    assert sandbox.run("downgrade", "up").returncode == 0
    assert sandbox.installed() == {"up-1.0-1.noarch"}
    result = sandbox.run("reinstall", "up")
    assert result.returncode == 0, result
    assert [e["version"] for e in decisions(sandbox)] == ["1.0-1", "1.2-1", "1.1-1", "1.2-1", "1.0-1", "1.0-1"]


def test_local_file_is_hashed_and_verified_before_installing(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    good, bad = world.files["localok"], world.files["localbad"]
    result = sandbox.run("install", f"./{good.name}", cwd=good.parent)
    assert result.returncode == 0, result
    assert sandbox.installed() == {"localok-1.0-1.noarch"}
    [entry] = decisions(sandbox)
    assert entry["repo"] == "@commandline" and entry["sha256"] == sha256_file(good)
    assert entry["verdict"] == "accepted"

    result = sandbox.run("install", f"./{bad.name}", cwd=bad.parent)
    assert result.returncode == 1, result
    assert "Error: rebuildgate blocked 1 of 1 package(s) before installing" in result.stderr
    assert "Nothing was installed." in result.stderr
    assert "0/2" in blocked_row(result, "localbad-1.0-1.noarch")
    assert "Running transaction\n" not in result.stdout
    assert sandbox.installed() == {"localok-1.0-1.noarch"}


def test_ungated_repository_passes_without_evidence(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    since = {rb.name: len(rb.server.requests) for rb in world.rebuilders}
    result = sandbox.run("install", "free")
    assert result.returncode == 0, result
    assert sandbox.installed() == {"free-1.0-1.noarch"}
    assert all(rb.server.requests[since[rb.name]:] == [] for rb in world.rebuilders)
    [entry] = decisions(sandbox)
    assert entry["repo"] == "extras" and "not gated" in entry["reason"]


def test_repository_checksum_types(world: World, sandbox_dir: Path) -> None:
    """sha1 metadata cannot name a file: refused before download even though
    all rebuilders attest it.  sha512 metadata is strong but the core needs a
    sha256: verified after download, from the file."""
    sandbox = world.sandbox(sandbox_dir, repos=("legacy", "modern"))
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "oldsum")
    assert_blocked_before_download(result, sandbox, world, since, "oldsum")
    assert "only a sha1 checksum" in blocked_row(result, "oldsum-1.0-1.noarch")

    result = sandbox.run("install", "newsum")
    assert result.returncode == 0, result
    assert sandbox.installed() == {"newsum-1.0-1.noarch"}
    entry = decisions(sandbox)[-1]
    assert entry["name"] == "newsum" and entry["votes"] == ["rb1", "rb2", "rb3"]
    assert entry["sha256"] == sha256_file(world.files["newsum"])


def test_audit_mode_warns_and_installs(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    world.policy(sandbox.policy, mode="audit")
    result = sandbox.run("install", "lonely")
    assert result.returncode == 0, result
    assert sandbox.installed() == {"lonely-1.0-1.noarch"}
    assert "lonely" in result.stderr and "audit mode" in result.stderr, result
    [entry] = decisions(sandbox)
    assert entry["verdict"] == "blocked" and entry["allowed"] is True and entry["relaxed_by"] == "audit mode"


@pytest.mark.parametrize("policy_text, expected", [
    ("threshold = 'two'\n", "threshold: must be an integer"),
    ("threshold = 1\n[[rebuilder]]\nname = 'rb1'\nurl = 'http://127.0.0.1:9'\nkeys = ['/nonexistent.pem']\n",
     "does not exist"),
    (None, "policy file does not exist"),
])
def test_broken_policy_blocks_with_a_clear_message(world: World, sandbox_dir: Path,
                                                   policy_text: str | None, expected: str) -> None:
    sandbox = world.sandbox(sandbox_dir)
    assert sandbox.policy is not None
    if policy_text is None:
        sandbox.policy.unlink()
    else:
        sandbox.policy.write_text(policy_text)
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "hello")
    assert result.returncode == 1, result
    [line] = [l for l in result.stderr.splitlines() if l.strip()]  # one line
    assert line.startswith("Error: rebuildgate: checking packages before download failed: "), result
    assert str(sandbox.policy) in line and expected in line and "nothing was installed" in line
    assert sandbox.installed() == set()
    assert not rpm_requests(world.repo_server.requests[since:])


def test_policy_from_environment(world: World, sandbox_dir: Path) -> None:
    """Without ``policy =`` in rebuildgate.conf, $REBUILDGATE_POLICY is used."""
    sandbox = world.sandbox(sandbox_dir)
    policy = sandbox.policy
    sandbox.policy = None
    sandbox.write_plugin_conf()
    result = sandbox.run("install", "lonely", env={"REBUILDGATE_POLICY": str(policy)})
    assert result.returncode == 1 and "lonely-1.0-1.noarch" in result.stderr, result
    assert str(policy) in result.stderr


def test_missing_library_blocks(world: World, sandbox_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-site-packages"
    empty.mkdir()
    sandbox = world.sandbox(sandbox_dir, library_path=str(empty))
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "hello", env=hide_rebuildgate(tmp_path / "hide"))
    assert result.returncode == 1, result
    assert "Failed loading plugin" not in result.output
    assert "Error: rebuildgate: checking packages before download failed: the rebuildgate library " \
           "cannot be imported (No module named 'rebuildgate'" in result.stderr, result
    assert f"library_path = {empty}" in result.stderr
    assert sandbox.installed() == set()
    assert not rpm_requests(world.repo_server.requests[since:])


def test_a_bug_in_the_library_blocks(world: World, sandbox_dir: Path, tmp_path: Path) -> None:
    """Any exception other than dnf.exceptions.Error would be printed and
    ignored by dnf; the plugin must turn it into an error."""
    fake = tmp_path / "buggy-site-packages"
    (fake / "rebuildgate" / "dnf").mkdir(parents=True)
    (fake / "rebuildgate" / "__init__.py").write_text("")
    (fake / "rebuildgate" / "dnf" / "__init__.py").write_text("")
    (fake / "rebuildgate" / "dnf" / "gate.py").write_text(
        "class Blocked(Exception): pass\n"
        "class LibraryError(Exception): pass\n"
        "def check_environment(): pass\n"
        "def dnf_proxy_choice(conf): return None\n"
        "class Gate:\n"
        "    @classmethod\n"
        "    def load(cls, policy, proxy): return cls()\n"
        "    def resolved(self, packages): return 1 / 0\n")
    sandbox = world.sandbox(sandbox_dir, library_path=str(fake))
    result = sandbox.run("install", "hello")
    assert result.returncode == 1, result
    assert "Error: rebuildgate: checking packages before download failed: ZeroDivisionError" in result.stderr
    assert sandbox.installed() == set()


def test_old_in_toto_on_the_system_path_does_not_shadow_the_library(world: World, sandbox_dir: Path,
                                                                     tmp_path: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    result = sandbox.run("install", "hello", env=old_intoto_on_path(tmp_path / "old-dist-packages"))
    assert result.returncode == 0, result
    assert sandbox.installed() == {"hello-1.0-1.noarch"}


def test_removal_is_never_blocked(world: World, sandbox_dir: Path) -> None:
    sandbox = world.sandbox(sandbox_dir)
    assert sandbox.run("install", "hello").returncode == 0
    assert sandbox.policy is not None
    sandbox.policy.write_text("this is not a policy\n")
    result = sandbox.run("remove", "hello")
    assert result.returncode == 0, result
    assert sandbox.installed() == set()


def _behind_the_proxy(world: World, sandbox_dir: Path, forward_proxy):
    """rb1 named rb1.rebuilders.test, which only our forward proxy resolves; a sandbox whose policy says so.
    Returns (rb1, how many requests it had answered before, the sandbox)."""
    rb1 = world.rebuilders[0]
    assert rb1.server is not None
    forward_proxy.map("rb1.rebuilders.test", rb1.server.port)
    before = len(rb1.server.requests)
    sandbox = world.sandbox(sandbox_dir)
    world.policy(sandbox.policy, threshold=1, rebuilders=["rb1"], urls={"rb1": "http://rb1.rebuilders.test"})
    return rb1, before, sandbox


def test_evidence_is_fetched_through_dnfs_proxy(world: World, sandbox_dir: Path, forward_proxy) -> None:
    """Qubes templates reach the network only through dnf's proxy.  The
    rebuilder is named rb1.rebuilders.test, which only our forward proxy
    resolves; every request it answered came through that proxy."""
    rb1, before, sandbox = _behind_the_proxy(world, sandbox_dir, forward_proxy)
    result = sandbox.run("install", "hello", setopts=[f"proxy={forward_proxy.url}"])
    assert result.returncode == 0, result
    served = rb1.server.requests[before:]
    assert "/sources/hello/1.0-1/metadata" in served
    assert forward_proxy.requests() == [f"GET http://rb1.rebuilders.test{path}" for path in served]
    assert sandbox.installed() == {"hello-1.0-1.noarch"}


def test_a_rebuilder_no_proxy_lists_is_asked_directly_as_dnf_reaches_it(world: World, sandbox_dir: Path,
                                                                         forward_proxy) -> None:
    """libcurl sends dnf's own downloads to a host $no_proxy lists around dnf's
    proxy= (measured: the repository on 127.0.0.1 was fetched directly); the
    evidence goes the same way, not through a proxy that may not reach it."""
    sandbox = world.sandbox(sandbox_dir)
    world.policy(sandbox.policy, threshold=1)
    rb1 = world.rebuilders[0]
    assert rb1.server is not None
    before = len(rb1.server.requests)
    result = sandbox.run("install", "hello", setopts=[f"proxy={forward_proxy.url}"], env={"no_proxy": "127.0.0.1"})
    assert result.returncode == 0, result
    assert "/sources/hello/1.0-1/metadata" in rb1.server.requests[before:]
    assert forward_proxy.requests() == []  # neither dnf nor the evidence went through it
    assert sandbox.installed() == {"hello-1.0-1.noarch"}


def test_without_dnfs_proxy_the_hidden_rebuilder_is_unreachable_and_blocks(world: World, sandbox_dir: Path,
                                                                          forward_proxy) -> None:
    rb1, before, sandbox = _behind_the_proxy(world, sandbox_dir, forward_proxy)
    since = len(world.repo_server.requests)
    result = sandbox.run("install", "hello")
    assert_blocked_before_download(result, sandbox, world, since, "hello")
    assert forward_proxy.requests() == [] and rb1.server.requests[before:] == []
