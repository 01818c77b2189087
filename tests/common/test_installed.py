"""rebuildgate.installed: which package manager a root has, and choosing packages by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebuildgate.installed import (DPKG, INDEX, RPM, UNKNOWN, InstalledError, InstalledPackage,
                                   pick_package_manager, read_installed, select)


def test_the_package_manager_is_the_one_whose_database_the_root_holds(tmp_path: Path) -> None:
    debian, fedora, empty = tmp_path / "debian", tmp_path / "fedora", tmp_path / "empty"
    (debian / "var/lib/dpkg").mkdir(parents=True)
    (debian / "var/lib/dpkg/status").write_text("")
    (fedora / "usr/lib/sysimage/rpm").mkdir(parents=True)
    empty.mkdir()
    assert pick_package_manager(str(debian), environ={}) == DPKG
    assert pick_package_manager(str(fedora), environ={}) == RPM
    assert pick_package_manager(str(empty), rpm_dbpath="/var/lib/rpm", environ={}) == RPM
    assert pick_package_manager(str(debian), explicit=RPM, environ={}) == RPM
    with pytest.raises(InstalledError, match="give --package-manager dpkg|rpm"):
        pick_package_manager(str(empty), environ={})
    # APT_CONFIG points apt (and so status) at a private dpkg database, wherever it is
    assert pick_package_manager(None, environ={"APT_CONFIG": "/tmp/apt.conf"}) == DPKG


def test_rpm_options_are_refused_for_dpkg() -> None:
    with pytest.raises(InstalledError, match="--dbpath and --setopt are dnf/rpm options"):
        read_installed(DPKG, setopts=["cachedir=/x"])


def test_packages_are_chosen_by_name_or_name_and_arch() -> None:
    packages = [InstalledPackage("libc6", "2.36-9", "amd64", INDEX),
                InstalledPackage("libc6", "2.36-9", "i386", INDEX), InstalledPackage("gone", "1", "all", UNKNOWN)]
    assert select(packages, []) == packages
    assert select(packages, ["libc6"]) == packages[:2]
    assert select(packages, ["libc6:i386", "gone"]) == packages[1:]
    with pytest.raises(InstalledError, match="not installed: nosuch, libc6:arm64"):
        select(packages, ["nosuch", "libc6", "libc6:arm64"])
