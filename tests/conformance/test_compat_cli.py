"""The rebuildgate command on other projects' real metadata in <shared>/compat
(moved from tests/common/test_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.common.test_cli import run
from tests.support.packages import sha256_file
from tests.support.policy import RebuilderEntry, write_policy


@pytest.fixture
def ati(compat: Path) -> Path:
    return compat / "apt-transport-in-toto"


@pytest.fixture
def rbd(compat: Path) -> Path:
    return compat / "rebuilderd"


@pytest.fixture
def ati_policy(tmp_path, ati: Path) -> Path:
    keyring = ati / "gpg_keyring" / "pubring.gpg"
    rbs = [RebuilderEntry(who, f"file://{ati}", layout="template", extra={
        "url_template": "{url}/rebuild." + keyid[:8].lower() + ".link", "gpg_keys": [keyid],
        "gpg_keyring": str(keyring)})
        for who, keyid in (("bob", "5863835E5EC8E640FA24410F069EDC1D59B58507"),
                           ("carly", "E946FC6076D683584E6803DBD35BAD6A79A3C6B3"))]
    return write_policy(tmp_path / "ati.toml", rbs, threshold=2)


def test_compat_apt_transport_in_toto_good_passes(ati_policy, ati: Path) -> None:
    good = ati / "good" / "final-product_0.0.0.0-0_all.deb"
    r = run("verify", "--policy", str(ati_policy), "--artifact", good.name, "--sha256", sha256_file(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted" in r.stdout and "2 votes (2 required) from bob, carly" in r.stdout


def test_compat_apt_transport_in_toto_bad_is_blocked(ati_policy, ati: Path) -> None:
    bad = ati / "bad" / "final-product_0.0.0.0-0_all.deb"
    r = run("verify", "--policy", str(ati_policy), "--json", "--artifact", bad.name, "--sha256", sha256_file(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "blocked" and out["votes"] == [] and out["sha256"] == sha256_file(bad)
    assert {c["rebuilder"] for c in out["conflicts"]} == {"bob", "carly"}


@pytest.mark.parametrize("which", ["good", "bad"])
def test_compat_placeholder_files_are_not_debian_packages(ati_policy, ati: Path, which) -> None:
    r = run("verify", "--policy", str(ati_policy), str(ati / which / "final-product_0.0.0.0-0_all.deb"))
    assert r.returncode == 2
    assert "not a Debian package" in r.stderr and r.stdout == ""


def rbd_policy(tmp_path: Path, rbd: Path, pub: str, template: str) -> Path:
    return write_policy(tmp_path / "rbd.toml", [RebuilderEntry("rbd", f"file://{rbd}", [rbd / pub], "template",
                                                               {"url_template": template})])


def test_compat_rebuilderd_debian(tmp_path, rbd: Path) -> None:
    p = rbd_policy(tmp_path, rbd, "reproduce-debian-net-amd64.pub", "{url}/{name}_{version}_{arch}.in-toto.link")
    sha = "32be954941cdb42bce44c19ece910af04ece3a1acc9b79fa3e8ff735ffb511cd"
    r = run("verify", "--policy", str(p), "--artifact", "librust-as-slice-dev_0.2.1-1+b2_amd64.deb", "--sha256", sha)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("verify", "--policy", str(p), "--artifact", "librust-as-slice-dev_0.2.1-1+b2_amd64.deb",
            "--sha256", "0" * 64)
    assert r.returncode == 1


@pytest.mark.parametrize("suffix,expected", [("", 0), (".INVALID", 1)])
def test_compat_rebuilderd_arch(tmp_path, rbd: Path, suffix, expected) -> None:
    p = rbd_policy(tmp_path, rbd, "reproducible-archlinux.pub",
                   "{url}/{name}-{version}-{arch}" + suffix + ".in-toto.link")
    sha = "6b6c3fee7432204840d3b6afc9bc1a68c28f591a47fb220071715c40cca956df"
    r = run("verify", "--policy", str(p), "--json", "--artifact", "filesystem-2025.10.12-1-any.pkg.tar.zst",
            "--sha256", sha, "--name", "filesystem", "--version", "2025.10.12-1", "--arch", "any")
    assert r.returncode == expected, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["votes"] == ([] if suffix else ["rbd"])
