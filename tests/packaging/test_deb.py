"""The .deb, installed with apt-get into a fresh Debian 12 root, used as an admin would.

One module-scoped root goes through the admin's path in order: install
(nothing changes), ``rebuildgate init``, ``rebuildgate enable``, an attested
package accepted and a tampered one blocked through ``rebuildgate+http``
from a repository and a rebuilder on the host's 127.0.0.1, removal refused
while a source is enabled, ``rebuildgate disable``, purge, and apt still
working.  The tests depend on that order (pytest runs a module's tests in
the order they are written).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.apt_transport.world import World
from tests.packaging.conftest import Built, Root, lines_with
from tests.support.server import RebuilderServer

SOURCES = "/etc/apt/sources.list.d/local.list"
SNIPPET = "/etc/apt/apt.conf.d/05rebuildgate-preinstall"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """A repository and one rebuilder, served from the host's 127.0.0.1 (the root shares the network)."""
    base = Path(tempfile.mkdtemp(prefix="rbg-pkg-world-"))
    base.chmod(0o755)
    servers: list[RebuilderServer] = []

    def serve(root: Path) -> RebuilderServer:
        servers.append(RebuilderServer(root).start())
        return servers[-1]

    yield World(base, make_server=serve)
    for server in servers:
        server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def setup(world: World) -> dict:
    hello = world.package("rbg-hello")
    evil = world.package("rbg-evil")
    rb = world.rebuilder("rb1")
    world.attest(rb, hello)
    world.attest(rb, evil, digest_of=b"what the rebuilder got\n")  # the served file is not what rb1 built
    repo = world.repo([hello, evil])
    return {"repo": repo, "rb": rb}


@pytest.fixture(scope="module")
def root(fresh_root: Root, packages: Built) -> Root:
    deb = fresh_root.put(packages.deb, f"/root/{packages.deb.name}")
    fresh_root.run("apt-get", "update", "-q", check=True)
    result = fresh_root.run("apt-get", "install", "-y", "-q", "--no-install-recommends", deb)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return fresh_root


def test_installing_changes_nothing_by_itself(root: Root, setup: dict) -> None:
    assert root.file("/usr/lib/apt/methods/rebuildgate+http").is_symlink()
    assert root.file(SNIPPET).is_file()
    assert not root.file("/etc/rebuildgate/policy.toml").exists()
    for gone in ("dnf", "rpm", "gcc"):
        assert root.run("dpkg-query", "-W", gone).returncode != 0, f"{gone} was pulled in"
    # apt works as before: a plain source, a package installed, one W: line from the hook.
    root.file(SOURCES).write_text(f"deb [trusted=yes] {setup['repo'].http} ./\n")
    assert root.run("apt-get", "update", "-q").returncode == 0
    result = root.run("apt-get", "install", "-y", "-q", "rbg-hello")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "rebuildgate" in line] == [
        "W: rebuildgate: no policy file /etc/rebuildgate/policy.toml: packages are not checked before dpkg "
        "(write the policy to turn rebuildgate on)"]
    root.run("apt-get", "purge", "-y", "-q", "rbg-hello", check=True)


def test_bundled_libraries_are_rebuildgates_alone(root: Root, packages: Built) -> None:
    version = root.run("rebuildgate", "--version", check=True).stdout
    assert "bundled in /usr/lib/rebuildgate/lib" in version
    for pin in ("securesystemslib 1.6.0", "cryptography 50.0.2", "cffi 2.1.1", "python-gnupg 0.5.7"):
        assert f"  {pin}\n" in version
    assert "python-apt" in version and "OpenSSL" in version
    probe = ("import sys; sys.path.insert(0, '/usr/lib/rebuildgate/lib'); import securesystemslib, cryptography, "
             "gnupg, _cffi_backend; from cryptography.hazmat.primitives.asymmetric.ed25519 import "
             "Ed25519PrivateKey; k = Ed25519PrivateKey.generate(); k.public_key().verify(k.sign(b'x'), b'x'); "
             "print(securesystemslib.__file__)")
    assert root.run("python3", "-c", probe, check=True).stdout.startswith("/usr/lib/rebuildgate/lib/")
    # Other programs never see them: not on the system Python's path.
    plain = root.run("python3", "-c", "import securesystemslib")
    assert plain.returncode != 0 and "No module named 'securesystemslib'" in plain.stderr
    assert root.file("/usr/share/man/man5/rebuildgate-policy.5.gz").is_file()
    assert root.file("/usr/share/doc/rebuildgate/examples/policy.toml").is_file()


def test_init_writes_a_policy_that_check_config_explains(root: Root, setup: dict) -> None:
    rb = setup["rb"]
    key = root.put(rb.key.public_pem, "/root/rb1.pem")
    result = root.run("rebuildgate", "init", "--rebuilder", "rb1", rb.url, key, "--threshold", "1")
    assert result.returncode == 0, result.stderr
    assert "rebuilder rb1:" in result.stdout and "wrote /etc/rebuildgate/policy.toml" in result.stdout
    assert root.file("/etc/rebuildgate/keys/rb1.pem").read_bytes() == rb.key.public_pem.read_bytes()
    check = root.run("rebuildgate", "check-config", check=True)
    assert "policy OK" in check.stdout and "key " in check.stdout


def test_enable_switches_the_source_and_apt_gates_through_it(root: Root, setup: dict) -> None:
    dry = root.run("rebuildgate", "enable", "--dry-run", "--all", check=True)
    assert f"+deb [trusted=yes] rebuildgate+{setup['repo'].http} ./" in dry.stdout
    assert "rebuildgate+" not in root.file(SOURCES).read_text()
    enabled = root.run("rebuildgate", "enable", "127.0.0.1:*", check=True)
    assert "switched" in enabled.stdout
    assert root.file(SOURCES).read_text() == f"deb [trusted=yes] rebuildgate+{setup['repo'].http} ./\n"
    again = root.run("rebuildgate", "enable", "127.0.0.1:*", check=True)
    assert "already" in again.stdout and "nothing to change" in again.stdout
    assert root.run("apt-get", "update", "-q").returncode == 0
    root.run("apt-get", "clean", check=True)  # hello was fetched plain before: fetch it through the method
    accepted = root.run("apt-get", "install", "-y", "-q", "rbg-hello")
    assert accepted.returncode == 0, accepted.stderr
    assert lines_with(accepted.stdout, f"rebuildgate+{setup['repo'].http.rstrip('/')} ./ rbg-hello 1.0-1"), accepted.stdout
    assert root.run("dpkg-query", "-W", "rbg-hello").returncode == 0
    blocked = root.run("apt-get", "install", "-y", "-q", "rbg-evil")
    assert blocked.returncode != 0
    # the packaged pre-prompt hook stops it before anything is downloaded, with the table
    assert lines_with(blocked.stderr, "rebuildgate blocked 1 of 1 package(s) before download"), blocked.stderr
    assert lines_with(blocked.stderr, "rbg-evil 1.0-1") and lines_with(blocked.stderr, "Nothing was downloaded.")
    assert lines_with(blocked.stderr, "1 conflicting (max 0): rb1 attests sha256"), blocked.stderr
    assert root.run("dpkg-query", "-W", "rbg-evil").returncode != 0
    log = root.file("/var/log/rebuildgate/decisions.log").read_text()
    assert '"verdict": "accepted"' in log and '"artifact": "rbg-evil_1.0-1_all.deb"' in log


def test_removal_is_refused_while_a_source_is_enabled(root: Root) -> None:
    result = root.run("apt-get", "remove", "-y", "-q", "rebuildgate")
    assert result.returncode != 0
    output = result.stdout + result.stderr  # dpkg's maintainer scripts write where apt shows dpkg's output
    assert lines_with(output, "rebuildgate: not removed: these apt sources go through rebuildgate+")
    assert lines_with(output, "rebuildgate disable --all")
    assert root.run("dpkg-query", "-W", "-f", "${Status}", "rebuildgate").stdout == "install ok installed"
    assert root.file(SNIPPET).is_file()


def test_disable_then_purge_leaves_apt_working(root: Root, setup: dict) -> None:
    disabled = root.run("rebuildgate", "disable", "--all", check=True)
    assert "switched" in disabled.stdout and "saved in /var/lib/rebuildgate/sources-backup/" in disabled.stdout
    assert root.file(SOURCES).read_text() == f"deb [trusted=yes] {setup['repo'].http} ./\n"
    purge = root.run("apt-get", "purge", "-y", "-q", "rebuildgate")
    assert purge.returncode == 0, purge.stderr
    for gone in (SNIPPET, "/usr/lib/apt/methods/rebuildgate+http", "/usr/bin/rebuildgate", "/usr/lib/rebuildgate",
                 "/var/log/rebuildgate", "/var/cache/rebuildgate"):
        assert not root.file(gone).exists(), gone
    update = root.run("apt-get", "update", "-q")
    assert update.returncode == 0 and "rebuildgate" not in update.stdout + update.stderr
    assert root.run("apt-get", "install", "-y", "-q", "--reinstall", "rbg-hello").returncode == 0
