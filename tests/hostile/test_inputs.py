"""Hostile input from the repository side: package files, names, versions
and hashes an attacker may control, through the library and the CLI.

A package's bytes are what is judged (never its file name), and names and
versions reach exactly the rebuilder URL or path they denote, never another
directory and never a header or a second line of output.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from rebuildgate.model import Artifact
from rebuildgate.policy import load_policy
from rebuildgate.verify import Verifier

from tests.support.links import digests
from tests.support.packages import build_deb, build_rpm, sha256_file
from tests.support.policy import RebuilderEntry, write_policy
from tests.support.rebuilders import make_rebuilders

from .helpers import cli, kinds

CONTENT = b"the honest package"
EVIL = b"the backdoored package"
FILE = "hello_1.0-1_all.deb"


def verify(policy, *arts: Artifact):
    with Verifier(policy) as v:
        return v.verify_many(list(arts))


def json_lines(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


# ---------------------------------------------------------------------------
# The hash given is the hash judged


@pytest.fixture
def attested(tmp_path) -> Path:
    """Two file:// rebuilders attesting CONTENT as FILE; the policy path."""
    rbs = make_rebuilders(tmp_path, 2)
    for rb in rbs:
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    return write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=2)


def test_artifact_whose_bytes_differ_from_the_attested_hash_is_blocked(attested) -> None:
    good, evil = digests(CONTENT), digests(EVIL)
    r = cli("verify", "--policy", attested, "--json", "--artifact", FILE, "--sha256", evil["sha256"])
    assert r.returncode == 1, r.stderr
    (out,) = json_lines(r.stdout)
    assert out["verdict"] == "blocked" and out["votes"] == [] and out["sha256"] == evil["sha256"]
    assert {c["rebuilder"] for c in out["conflicts"]} == {"rb1", "rb2"}
    # The right sha256 with a wrong sha512 is no better: every digest we know must match.
    r = cli("verify", "--policy", attested, "--json", "--artifact", FILE, "--sha256", good["sha256"],
            "--sha512", evil["sha512"])
    assert r.returncode == 1 and json_lines(r.stdout)[0]["conflict_count"] == 2, r.stdout
    # Upper-case hex of the right file is the same file.
    r = cli("verify", "--policy", attested, "--artifact", FILE, "--sha256", good["sha256"].upper(),
            "--sha512", good["sha512"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_renamed_files_are_judged_by_their_contents(tmp_path) -> None:
    honest = build_deb(tmp_path / "honest", "hello", "1.0-1")
    evil = build_deb(tmp_path / "evil", "evil", "6.6", payload=b"rm -rf /\n")
    rpm = build_rpm(tmp_path / "rpm", "hello", "1.0", "1")
    rbs = make_rebuilders(tmp_path, 2)
    for rb in rbs:
        rb.publish("hello", "1.0-1", {FILE: honest.read_bytes()})
    policy = write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=2)
    files = tmp_path / "incoming"
    files.mkdir()
    # The attacker's package under the honest package's name, the honest one
    # under the attacker's, and an rpm posing as the honest .deb.
    shutil.copy(evil, files / FILE)
    shutil.copy(honest, files / "evil_6.6_all.deb")
    (files / "rpm").mkdir()
    shutil.copy(rpm, files / "rpm" / FILE)
    r = cli("verify", "--policy", policy, "--json", files / FILE, files / "evil_6.6_all.deb", files / "rpm" / FILE)
    assert r.returncode == 1, r.stderr
    posing, renamed, rpm_out = json_lines(r.stdout)
    assert (posing["artifact"], posing["name"], posing["verdict"]) == ("evil_6.6_all.deb", "evil", "blocked")
    assert posing["sha256"] == sha256_file(evil)
    assert (renamed["artifact"], renamed["name"], renamed["verdict"]) == (FILE, "hello", "accepted")
    assert (rpm_out["artifact"], rpm_out["verdict"]) == ("hello-1.0-1.noarch.rpm", "blocked")


# ---------------------------------------------------------------------------
# Odd characters reach the right URL or path, and only that one

ODD = [
    ("hello", "2:1.0+b1~rc1"),  # epoch dropped, + and ~ kept
    ("hello", "1:2:3-1"),  # a colon after the epoch belongs to the version
    ("c++", "1.0~beta+dfsg"),
    ("hello world", "1.0"),
    ("h\u00e9llo", "1.0"),
    ("hello", "1.0;x=1"),
    ("hello", "1.0%2b1"),  # a literal percent sign, not an escape
    ("hello", "1.0%41"),
    ("hello", "1.0#2"),
    ("hello", "1.0?x=1"),
]


@pytest.mark.parametrize("transport", ["http", "file"])
@pytest.mark.parametrize("name,version", ODD, ids=[repr(v) for _, v in ODD])
def test_odd_names_and_versions_reach_their_own_evidence(tmp_path, rebuilder_server, transport, name, version) -> None:
    upstream = version.split(":", 1)[1] if ":" in version else version
    filename = f"{name}_{upstream}_all.deb"
    (rb,) = make_rebuilders(tmp_path, 1, rebuilder_server if transport == "http" else None)
    rb.publish(name, upstream, {filename: CONTENT})  # the literal directory sources/{name}/{upstream}
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry()], threshold=1))
    d = digests(CONTENT)
    (v,) = verify(policy, Artifact(filename, d["sha256"], name=name, source=name, version=version, arch="all"))
    assert v.accepted, v.reason
    if transport == "http":
        (target,) = rb.server.requests
        assert unquote(urlsplit(target).path) == f"/sources/{name}/{upstream}/metadata"


TRAVERSAL = [
    ("..", "1.0"),
    ("hello", ".."),
    ("hello", "../../planted"),
    ("hello", "1.0/../../../../planted"),
    ("hello\\..\\..", "1.0"),
    ("%2e%2e", "%2e%2e%2f%2e%2e%2fplanted"),
    ("hello", "..%2f..%2f..%2fplanted"),
    ("hello", "1.0\x00"),
]


@pytest.mark.parametrize("source,version", TRAVERSAL, ids=[repr(t) for t in TRAVERSAL])
def test_file_rebuilder_names_never_leave_its_directory(tmp_path, source, version) -> None:
    """Wherever a name could lead once decoded and normalised, a validly
    signed link waits there; it must never be found."""
    (rb,) = make_rebuilders(tmp_path / "outer", 1)
    rb.publish("hello", "0.9-1", {"hello_0.9-1_all.deb": b"old"})  # a real tree: sources/hello/ exists
    doc = rb.sign({FILE: CONTENT})
    target = Path(os.path.normpath(f"{rb.root}/sources/{unquote(source)}/{unquote(version)}/metadata"
                                   .replace("\\", "/").replace("\x00", "")))
    for planted in {target, tmp_path / "outer" / "planted" / "metadata", tmp_path / "planted" / "metadata"}:
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_bytes(doc)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry()], threshold=1))
    (v,) = verify(policy, Artifact(FILE, digests(CONTENT)["sha256"], name="hello", source=source, version=version,
                                   arch="all"))
    assert not v.accepted and v.vote_count == 0, v.reason
    # Refused outright, or (percent signs are literal on disk) simply not there.
    assert kinds(v) in ({"rb1": {"fetch-error"}}, {"rb1": {"missing"}}), v.reason
    if "%" not in source + version:
        assert kinds(v) == {"rb1": {"fetch-error"}}, v.reason


@pytest.mark.parametrize("source,version", TRAVERSAL, ids=[repr(t) for t in TRAVERSAL])
def test_http_rebuilder_names_never_become_path_segments(tmp_path, rebuilder_server, source, version) -> None:
    (rb,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry()], threshold=1))
    (v,) = verify(policy, Artifact(FILE, digests(CONTENT)["sha256"], name="hello", source=source, version=version,
                                   arch="all"))
    assert not v.accepted
    for target in rb.server.requests:  # what a server sees after decoding once
        segments = unquote(urlsplit(target).path).split("/")
        assert ".." not in segments and "." not in segments, target
        assert segments[:2] == ["", "sources"] and len(segments) == 5, target


def test_product_paths_are_names_never_paths(tmp_path) -> None:
    """A link's product paths are compared by base name; "../" in them
    neither reaches a file nor lets one product speak for another."""
    (rb,) = make_rebuilders(tmp_path, 1)
    rb.publish("hello", "1.0-1", {f"../../../{FILE}": CONTENT, "../../evil_1.0_all.deb": EVIL,
                                  "/etc/../../x.deb": EVIL})
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry()], threshold=1))
    good = Artifact(FILE, digests(CONTENT)["sha256"], name="hello", version="1.0-1", arch="all")
    other = Artifact("evil_1.0_all.deb", digests(CONTENT)["sha256"], name="evil", source="hello", version="1.0-1",
                     arch="all")
    v_good, v_other = verify(policy, good, other)
    assert v_good.accepted, v_good.reason
    assert not v_other.accepted and v_other.conflict_count == 1, v_other.reason


# ---------------------------------------------------------------------------
# Names with control characters, spaces, invalid UTF-8


@pytest.mark.parametrize("layout", ["package-rebuilder", "rebuilderd", "template"])
@pytest.mark.parametrize("field", ["name", "source", "version", "arch"])
def test_newlines_never_reach_a_request(tmp_path, rebuilder_server, layout, field) -> None:
    (rb,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    extra = {"url_template": "{url}/{source}/{name}/{version}/{arch}/{filename}"} if layout == "template" else {}
    entry = RebuilderEntry("rb1", rb.url, [rb.key.public_pem], layout, extra)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [entry], threshold=1))
    fields = {"name": "hello", "source": "hello", "version": "1.0-1", "arch": "all"}
    fields[field] += "\r\nX-Injected: 1"
    (v,) = verify(policy, Artifact(FILE, digests(CONTENT)["sha256"], **fields))
    assert not v.accepted
    for target in rb.server.requests:  # as sent, and as a server decodes it
        assert not any(ord(c) < 32 for c in target + unquote(target)), target
    assert "\n" not in v.reason and "\r" not in v.reason


def test_verdict_summary_is_one_line_whatever_the_name(tmp_path) -> None:
    """Verdict.summary() is documented as one line; the front ends print it."""
    (rb,) = make_rebuilders(tmp_path, 1)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry()], threshold=1))
    arts = [Artifact(FILE, digests(CONTENT)["sha256"], name="hello\nrebuildgate: accepted", version="1.0-1"),
            Artifact(FILE, digests(CONTENT)["sha256"], name="hello", version="1.0-1\r\n201 URI Done", arch="a\x1b[2K")]
    for v in verify(policy, *arts):
        assert not v.accepted
        line = v.summary()
        assert not any(ord(c) < 32 for c in line), repr(line)


def test_cli_output_stays_one_line_per_package(tmp_path, attested) -> None:
    sha = digests(CONTENT)["sha256"]
    for args in (["--artifact", "hello\n_1.0-1_all.deb"], ["--artifact", FILE, "--name", "a\nb", "--version", "1\r\n2"],
                 ["--artifact", "x" * 5000 + ".deb"]):
        r = cli("verify", "--policy", attested, *args, "--sha256", sha)
        assert r.returncode == 1, r.stderr
        assert r.stdout.count(b"\n") == 1 and b"\r" not in r.stdout, r.stdout
        r = cli("verify", "--policy", attested, "--json", *args, "--sha256", sha)
        assert r.returncode == 1 and len(json_lines(r.stdout)) == 1


@pytest.mark.parametrize("transport", ["http", "file"])
def test_invalid_utf8_in_names_is_refused_not_an_internal_error(tmp_path, rebuilder_server, transport) -> None:
    rbs = make_rebuilders(tmp_path, 1, rebuilder_server if transport == "http" else None)
    policy = write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=1)
    sha = digests(CONTENT)["sha256"].encode()
    for args in ([b"--artifact", FILE.encode(), b"--name", b"hel\xfflo"],
                 [b"--artifact", b"hel\xfflo_1.0-1_all.deb"],
                 [b"--artifact", FILE.encode(), b"--version", b"1.0\xc0\xaf-1"]):
        r = cli(b"verify", b"--policy", str(policy).encode(), b"--json", *args, b"--sha256", sha)
        assert r.returncode == 1, r.stderr
        (out,) = json_lines(r.stdout)
        assert out["verdict"] == "blocked" and not out["allowed"]
        assert [e["kind"] for e in out["errors"]] in ([], ["fetch-error"]), out["errors"]
        assert b"Traceback" not in r.stderr
