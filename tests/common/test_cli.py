"""The rebuildgate command: verdicts, exit codes, JSON.

Its runs on other projects' real metadata are conformance tests
(tests/conformance/test_compat_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.packages import build_deb, build_rpm, sha256_file
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebuildgate.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


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


# --- repository ids ------------------------------------------------------------

def test_check_config_refuses_a_repository_pattern_no_id_matches(tmp_path) -> None:
    """The README's old example: never matched apt's id, so the stricter rule silently fell back."""
    rbs = make_rebuilders(tmp_path, 3)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], threshold=2, arrays={"repository": [
        {"name": "debian", "match": ["deb.debian.org/debian/*"], "threshold": 3}]})
    for cmd in (["check-config"], ["verify", "--artifact", "x_1_all.deb", "--sha256", "a" * 64]):
        r = run(*cmd, "--policy", str(p))
        assert r.returncode == 2 and r.stdout == "", r.stdout
        (line,) = r.stderr.strip().splitlines()
        assert f"{p}: repository[0].match: pattern 'deb.debian.org/debian/*' misses" in line
        assert "did you mean 'deb.debian.org/debian'" in line


def test_check_config_explain(tmp_path) -> None:
    rbs = make_rebuilders(tmp_path, 3)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], threshold=2, arrays={"repository": [
        {"name": "debian", "match": ["deb.debian.org/debian"], "threshold": 3, "rebuilders": ["rb1", "rb2", "rb3"]},
        {"name": "deep", "match": ["deb.debian.org/debian/dists/bookworm"]}]})
    r = run("check-config", "--policy", str(p), "--explain",
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
            "rebuildgate+https://deb.debian.org/debian bookworm main", "--explain", "updates")
    assert r.returncode == 0, r.stderr
    assert "repository id 'deb.debian.org/debian'" in r.stdout and "[[repository]] debian" in r.stdout
    assert "threshold 3 of 3" in r.stdout and "rebuilders asked: rb1" in r.stdout
    assert "repository id 'updates'" in r.stdout and "the global rule applies" in r.stdout
    assert "warning: repository[1].match (deep): pattern 'deb.debian.org/debian/dists/bookworm'" in r.stdout
    assert r.stdout.rstrip().endswith("policy OK")
    r = run("check-config", "--policy", str(p), "--explain", "deb deb.debian.org/debian bookworm")
    assert r.returncode == 2 and "is not a URI" in r.stderr


def test_verify_repo_takes_an_id_or_the_uri_from_sources_list(tmp_path) -> None:
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], arrays={"repository": [
        {"name": "debian", "match": ["deb.debian.org/debian"], "gate": False}]})
    for repo in ("deb.debian.org/debian", "rebuildgate+https://deb.debian.org/debian/"):
        r = run("verify", "--policy", str(p), "--json", "--artifact", "x_1_all.deb", "--sha256", "a" * 64,
                "--repo", repo)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["repo"] == "deb.debian.org/debian" and out["allowed"]


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


@pytest.mark.parametrize("name,message", [("final-product_0.0.0.0-0_all.deb", "not a Debian package"),
                                          ("tools-1.0-1.noarch.rpm", "not an RPM package")])
def test_text_file_named_like_a_package_is_not_a_package(tmp_path, name, message) -> None:
    """A file that only carries a package's name gets an error, never a verdict."""
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs])
    (tmp_path / name).write_text("a text placeholder, not an archive\n")
    r = run("verify", "--policy", str(p), str(tmp_path / name))
    assert r.returncode == 2 and r.stdout == ""
    assert message in r.stderr
