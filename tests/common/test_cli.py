"""The rebuildgate command: verdicts, exit codes, JSON, and the compat files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.packages import build_deb, build_rpm, sha256_file
from tests.support.policy import RebuilderEntry, write_policy
from tests.support.rebuilders import make_rebuilders

COMPAT = Path(__file__).resolve().parents[2].parent / "shared" / "compat"
ATI = COMPAT / "apt-transport-in-toto"
RBD = COMPAT / "rebuilderd"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebuildgate.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


# --- compat: other projects' real metadata -----------------------------------

@pytest.fixture
def ati_policy(tmp_path) -> Path:
    keyring = ATI / "gpg_keyring" / "pubring.gpg"
    rbs = [RebuilderEntry(who, f"file://{ATI}", layout="template", extra={
        "url_template": "{url}/rebuild." + keyid[:8].lower() + ".link", "gpg_keys": [keyid],
        "gpg_keyring": str(keyring)})
        for who, keyid in (("bob", "5863835E5EC8E640FA24410F069EDC1D59B58507"),
                           ("carly", "E946FC6076D683584E6803DBD35BAD6A79A3C6B3"))]
    return write_policy(tmp_path / "ati.toml", rbs, threshold=2)


def test_compat_apt_transport_in_toto_good_passes(ati_policy) -> None:
    good = ATI / "good" / "final-product_0.0.0.0-0_all.deb"
    r = run("verify", "--policy", str(ati_policy), "--artifact", good.name, "--sha256", sha256_file(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "accepted" in r.stdout and "2 of 2" in r.stdout and "bob, carly" in r.stdout


def test_compat_apt_transport_in_toto_bad_is_blocked(ati_policy) -> None:
    bad = ATI / "bad" / "final-product_0.0.0.0-0_all.deb"
    r = run("verify", "--policy", str(ati_policy), "--json", "--artifact", bad.name, "--sha256", sha256_file(bad))
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["verdict"] == "blocked" and out["votes"] == [] and out["sha256"] == sha256_file(bad)
    assert {c["rebuilder"] for c in out["conflicts"]} == {"bob", "carly"}


@pytest.mark.parametrize("which", ["good", "bad"])
def test_compat_placeholder_files_are_not_debian_packages(ati_policy, which) -> None:
    r = run("verify", "--policy", str(ati_policy), str(ATI / which / "final-product_0.0.0.0-0_all.deb"))
    assert r.returncode == 2
    assert "not a Debian package" in r.stderr and r.stdout == ""


def rbd_policy(tmp_path: Path, pub: str, template: str) -> Path:
    return write_policy(tmp_path / "rbd.toml", [RebuilderEntry("rbd", f"file://{RBD}", [RBD / pub], "template",
                                                               {"url_template": template})])


def test_compat_rebuilderd_debian(tmp_path) -> None:
    p = rbd_policy(tmp_path, "reproduce-debian-net-amd64.pub", "{url}/{name}_{version}_{arch}.in-toto.link")
    sha = "32be954941cdb42bce44c19ece910af04ece3a1acc9b79fa3e8ff735ffb511cd"
    r = run("verify", "--policy", str(p), "--artifact", "librust-as-slice-dev_0.2.1-1+b2_amd64.deb", "--sha256", sha)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("verify", "--policy", str(p), "--artifact", "librust-as-slice-dev_0.2.1-1+b2_amd64.deb",
            "--sha256", "0" * 64)
    assert r.returncode == 1


@pytest.mark.parametrize("suffix,expected", [("", 0), (".INVALID", 1)])
def test_compat_rebuilderd_arch(tmp_path, suffix, expected) -> None:
    p = rbd_policy(tmp_path, "reproducible-archlinux.pub", "{url}/{name}-{version}-{arch}" + suffix + ".in-toto.link")
    sha = "6b6c3fee7432204840d3b6afc9bc1a68c28f591a47fb220071715c40cca956df"
    r = run("verify", "--policy", str(p), "--json", "--artifact", "filesystem-2025.10.12-1-any.pkg.tar.zst",
            "--sha256", sha, "--name", "filesystem", "--version", "2025.10.12-1", "--arch", "any")
    assert r.returncode == expected, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["votes"] == ([] if suffix else ["rbd"])


# --- real package files --------------------------------------------------------

def test_verify_local_deb_and_rpm_read_from_their_contents(tmp_path) -> None:
    deb = build_deb(tmp_path / "out", "libhello1", "2:1.0-1", source="hello")
    rpm = build_rpm(tmp_path / "out", "hello-libs", "1.0", "1", epoch=3, source_name="hello")
    renamed = tmp_path / "whatever.bin"
    renamed.write_bytes(deb.read_bytes())
    rbs = make_rebuilders(tmp_path, 2)
    for rb in rbs:
        rb.publish("hello", "1.0-1", {"libhello1_1.0-1_all.deb": deb.read_bytes(),
                                      "hello-libs-1.0-1.noarch.rpm": rpm.read_bytes()})
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], threshold=2)
    r = run("verify", "--policy", str(p), "--json", str(renamed), str(rpm))
    assert r.returncode == 0, r.stdout + r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert (first["artifact"], first["version"], first["source"]) == ("libhello1_1.0-1_all.deb", "2:1.0-1", "hello")
    assert (second["artifact"], second["version"], second["source"]) == ("hello-libs-1.0-1.noarch.rpm", "3:1.0-1",
                                                                        "hello")
    assert first["sha256"] == sha256_file(deb) and first["vote_count"] == 2
    # One blocked package makes the exit status 1.
    other = build_deb(tmp_path / "out2", "libhello1", "2:1.0-1", source="hello", payload=b"evil")
    r = run("verify", "--policy", str(p), str(deb), str(other))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert "accepted" in lines[0] and "blocked" in lines[1] and "conflicting" in lines[1]


def test_json_contract(tmp_path) -> None:
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], mode="audit")
    r = run("verify", "--policy", str(p), "--json", "--artifact", "x_1_all.deb", "--sha256", "a" * 64)
    assert r.returncode == 0  # audit mode blocks nothing
    out = json.loads(r.stdout)
    for key in ("artifact", "sha256", "verdict", "mode", "votes", "conflicts", "missing", "errors", "reason"):
        assert key in out
    assert out["verdict"] == "blocked" and out["mode"] == "audit" and out["allowed"] is True
    assert out["missing"] == ["rb1"]


# --- errors: exit 2, one line ---------------------------------------------------

def test_broken_policy_names_file_and_key(tmp_path) -> None:
    p = tmp_path / "p.toml"
    p.write_text('threshold = "two"\n')
    for cmd in (["verify", "--artifact", "x.deb", "--sha256", "a" * 64], ["check-config"]):
        r = run(*cmd, "--policy", str(p))
        assert r.returncode == 2 and r.stdout == ""
        (line,) = r.stderr.strip().splitlines()
        assert str(p) in line and "threshold" in line and "must be an integer" in line


def test_policy_from_environment(tmp_path) -> None:
    import os
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "env.toml", [rb.entry() for rb in rbs])
    r = run("check-config", env={**os.environ, "REBUILDGATE_POLICY": str(p)})
    assert r.returncode == 0 and str(p) in r.stdout and "policy OK" in r.stdout
    assert "needs 1 of 1" in r.stdout


def test_check_config_loads_keys(tmp_path) -> None:
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs])
    rbs[0].key.public_pem.write_text("junk")
    r = run("check-config", "--policy", str(p))
    assert r.returncode == 2 and "rebuilder[0] (rb1).keys" in r.stderr and "cannot load key file" in r.stderr


@pytest.mark.parametrize("args", [
    [],
    ["verify"],
    ["verify", "--artifact", "x.deb"],
    ["verify", "--artifact", "x.deb", "--sha256", "xyz"],
    ["verify", "--artifact", "../x.deb", "--sha256", "a" * 64],
    ["verify", "--artifact", "x.deb", "--sha256", "a" * 64, "file.deb"],
    ["frobnicate"],
])
def test_usage_errors_exit_2(tmp_path, args) -> None:
    r = run(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip()


def test_missing_file_is_an_error_not_a_verdict(tmp_path) -> None:
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs])
    r = run("verify", "--policy", str(p), str(tmp_path / "nope.deb"))
    assert r.returncode == 2 and "cannot read" in r.stderr
