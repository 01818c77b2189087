"""The .rpms, installed with dnf into an installroot; the host's dnf loads the packaged plugin from there.

The installroot has no Fedora underneath, so a stand-in package provides
exactly what the two .rpms require of the system (python3, dnf, libc...).
dnf then runs with the plugin path and plugin configuration *of the
installroot*: the plugin finds rebuildgate and its bundled libraries in the
installroot's /usr/lib/rebuildgate/lib by itself, with no library_path, and
blocks / accepts as the dnf tests do (tests/dnf_plugin).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.dnf_plugin.harness import DnfSandbox
from tests.dnf_plugin.world import World, build_world
from tests.packaging.conftest import Built

SITELIB = "usr/lib/python3.11/site-packages"


def _requires(rpm: Path) -> set[str]:
    out = subprocess.run(["rpm", "-qp", "--requires", str(rpm)], capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip() and not line.startswith("rpmlib(")}


def stand_in(outdir: Path, provides: set[str]) -> Path:
    """A noarch .rpm that provides *provides* (the system the packages expect)."""
    top = outdir / "rpmbuild"
    spec = top / "base.spec"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text("Name: system-stand-in\nVersion: 1\nRelease: 1\nSummary: what Fedora would provide\n"
                    "License: MIT\nBuildArch: noarch\n" + "".join(f"Provides: {p}\n" for p in sorted(provides))
                    + "\n%description\nstand-in\n\n%files\n")
    subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", f"_dbpath {top}/db", str(spec)],
                   check=True, capture_output=True, timeout=120)
    return next(top.glob("RPMS/noarch/system-stand-in-*.rpm"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("dnf-world"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def installroot(tmp_path_factory: pytest.TempPathFactory, packages: Built) -> DnfSandbox:
    """rebuildgate and python3-dnf-plugin-rebuildgate installed by dnf into an installroot."""
    base = tmp_path_factory.mktemp("rpm-installroot")
    ours = {"rebuildgate", "rebuildgate(x86-64)", "python3-dnf-plugin-rebuildgate"}
    needed = (_requires(packages.rpm) | _requires(packages.plugin_rpm)) - ours
    needed = {r.split(" ")[0] if r.startswith("rebuildgate ") else r for r in needed} - ours
    base_rpm = stand_in(base, needed)
    sandbox = DnfSandbox(base / "dnf", {}, policy=None, plugin=False)
    result = sandbox.run("install", str(base_rpm), str(packages.rpm), str(packages.plugin_rpm))
    assert result.returncode == 0, result
    return sandbox


def packaged(installroot: DnfSandbox, base: Path, world: World, policy: Path | None) -> DnfSandbox:
    """A dnf run whose plugin path and plugin conf are the installroot's, with no library_path."""
    sandbox = DnfSandbox(base, {r: world.repo_urls[r] for r in ("gated", "extras")},
                         policy=None, plugin=False)
    sandbox.root = installroot.root  # the rpmdb the packages are in
    conf = installroot.root / "etc/dnf/plugins/rebuildgate.conf"
    text = conf.read_text()
    assert "\nlibrary_path" not in text and "\nenabled = 1" in text
    if policy is not None:
        conf = base / "plugins.conf.d" / "rebuildgate.conf"
        conf.write_text(text + f"\npolicy = {policy}\n")
    sandbox.plugins = installroot.root / SITELIB / "dnf-plugins"
    sandbox.pluginconf = conf.parent
    return sandbox


def test_the_rpms_install_what_they_should(installroot: DnfSandbox, packages: Built) -> None:
    root = installroot.root
    assert {"rebuildgate-0.1.0-1.x86_64", "python3-dnf-plugin-rebuildgate-0.1.0-1.noarch"} <= installroot.installed()
    for path in ("usr/bin/rebuildgate", "usr/lib/rebuildgate/lib/rebuildgate-bundle.txt",
                 "usr/lib/rebuildgate/lib/securesystemslib/__init__.py", f"{SITELIB}/dnf-plugins/rebuildgate.py",
                 "etc/dnf/plugins/rebuildgate.conf", "usr/share/man/man5/rebuildgate-policy.5"):
        assert (root / path).exists(), path
    config = subprocess.run(["rpm", "-qp", "--configfiles", str(packages.plugin_rpm)], capture_output=True,
                            text=True, check=True).stdout.split()
    assert config == ["/etc/dnf/plugins/rebuildgate.conf"]
    assert not list(root.glob("usr/lib/apt/methods/rebuildgate*"))  # apt's parts are the .deb's


def test_the_packaged_plugin_blocks_and_accepts_without_library_path(installroot: DnfSandbox, world: World,
                                                                     tmp_path: Path) -> None:
    policy = world.policy(tmp_path / "policy.toml")
    sandbox = packaged(installroot, tmp_path / "dnf", world, policy)
    blocked = sandbox.run("install", "evil")
    assert blocked.returncode == 1, blocked
    assert "Error: rebuildgate blocked 1 of 1 package(s) before download" in blocked.stderr
    accepted = sandbox.run("install", "hello")
    assert accepted.returncode == 0, accepted
    assert "hello-1.0-1.noarch" in installroot.installed()
    assert "evil-1.0-1.noarch" not in installroot.installed()


def test_without_a_policy_dnf_works_as_before(installroot: DnfSandbox, world: World, tmp_path: Path) -> None:
    sandbox = packaged(installroot, tmp_path / "dnf", world, None)
    result = sandbox.run("install", "free")
    assert result.returncode == 0, result
    assert "rebuildgate: no policy file /etc/rebuildgate/policy.toml: packages are not checked" in result.stderr
