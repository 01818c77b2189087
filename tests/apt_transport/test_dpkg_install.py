"""A full ``apt-get install`` that dpkg carries out, into a throwaway root.

apt uses ``<tmp>/target/var/lib/dpkg/status`` and runs dpkg with
``--root=<tmp>/target`` (harness.AptEnv(target=True)), so the accepted
package really unpacks and configures there; the host's package database
is compared before and after (also by the autouse fixture in conftest).
"""

from __future__ import annotations

import pytest

from tests.apt_transport.harness import AptEnv, flat_source, host_state
from tests.apt_transport.world import World
from tests.support.packages import INSTALL_DIR

pytestmark = pytest.mark.timeout(150)


def test_accepted_installs_blocked_leaves_no_trace(world: World, apt_factory):
    before = host_state()
    good = world.package("goodpkg", "1:2.0-1", source="goodsrc", payload=b"good\n")
    bad = world.package("badpkg", "1.0-1", payload=b"bad\n")
    rbs = [world.rebuilder(f"rb{i}") for i in range(2)]
    for rb in rbs:
        world.attest(rb, good)
        world.attest(rb, bad)
    repo = world.repo([good, world.tampered(bad, b"evil\n")])
    apt: AptEnv = apt_factory("apt", target=True)
    assert apt.target is not None
    apt.sources([flat_source(repo.http)])
    options = {"Rebuildgate::Policy": str(world.policy(rbs, threshold=2))}
    assert apt.update(options=options).returncode == 0

    result = apt.install("goodpkg", options=options)
    assert result.returncode == 0, result
    assert "Setting up goodpkg (1:2.0-1)" in result.stdout
    assert (apt.target / INSTALL_DIR / "goodpkg").read_bytes() == b"good\n"
    assert "Package: goodpkg\nStatus: install ok installed" in apt.status.read_text()

    result = apt.install("badpkg", options=options)
    assert result.returncode == 100, result
    [line] = [l for l in result.output.splitlines() if l.startswith("E: Failed to fetch") and "badpkg" in l]
    assert "rebuildgate: badpkg 1.0-1 (all): blocked: 0 votes (2 required)" in line
    assert "Unpacking" not in result.stdout
    assert not (apt.target / INSTALL_DIR / "badpkg").exists()
    assert "badpkg" not in apt.status.read_text()
    assert not list((apt.target / "var/lib/dpkg/info").glob("badpkg*"))
    assert not [n for n in apt.downloaded() if n.startswith("badpkg") or "partial/badpkg" in n]
    assert host_state() == before
