"""``rebuildgate collect`` against rebuilders on 127.0.0.1: documents exactly as
served, a manifest, a tar file, parallel and bounded, and no keys needed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from rebuildgate.collect import MANIFEST, collect
from rebuildgate.model import Artifact
from rebuildgate.policy import load_policy

from tests.support.links import digests
from tests.support.packages import build_deb
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders
from tests.support.server import Fault

CONTENT = b"honest package"
FILE = "hello_1.0-1_all.deb"


def artifact(name: str = "hello", content: bytes = CONTENT) -> Artifact:
    return Artifact(f"{name}_1.0-1_all.deb", digests(content)["sha256"], name=name, source=name,
                    version="1.0-1", arch="all")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebuildgate.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def rebuilders(tmp_path, rebuilder_server):
    """rb1 and rb2 over HTTP; rb1 attests hello, rb2 has nothing; the policy for both."""
    rbs = make_rebuilders(tmp_path, 2, rebuilder_server)
    rbs[0].publish("hello", "1.0-1", {FILE: CONTENT})
    policy = write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs])
    return rbs, policy


def test_collect_writes_documents_as_served_and_a_manifest(tmp_path, rebuilders) -> None:
    rbs, path = rebuilders
    bundle, tar = tmp_path / "bundle", tmp_path / "out" / "bundle.tar"
    report = collect(load_policy(path), [artifact()], bundle, tar=tar)
    served = (rbs[0].root / "sources/hello/1.0-1/metadata").read_bytes()
    written = bundle / "rb1/sources/hello/1.0-1/metadata"
    assert written.read_bytes() == served and not written.is_symlink()
    assert not (bundle / "rb2").exists()
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    assert manifest["format"] == "rebuildgate-evidence-bundle" and manifest["version"] == 1
    assert manifest["created"].endswith("Z") and manifest["policy"] == str(path)
    [doc] = manifest["documents"]
    assert doc == {"rebuilder": "rb1", "url": f"{rbs[0].url}/sources/hello/1.0-1/metadata",
                   "path": "rb1/sources/hello/1.0-1/metadata", "sha256": hashlib.sha256(served).hexdigest(),
                   "size": len(served), "packages": [FILE]}
    [missing] = manifest["missing"]
    assert missing["rebuilder"] == "rb2" and missing["path"] == "rb2/sources/hello/1.0-1/metadata"
    assert manifest["errors"] == [] and report.complete
    assert manifest["packages"] == [{"artifact": FILE, "sha256": digests(CONTENT)["sha256"], "name": "hello",
                                     "version": "1.0-1", "arch": "all", "source": "hello"}]
    with tarfile.open(tar) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert sorted(members) == [MANIFEST, "rb1/sources/hello/1.0-1/metadata"]
        assert all(m.isfile() and m.mode == 0o644 and m.uid == 0 for m in members.values())
        assert tf.extractfile("rb1/sources/hello/1.0-1/metadata").read() == served
    assert [p.name for p in tar.parent.iterdir()] == ["bundle.tar"]  # no temporary file left


def test_collect_removes_outdated_documents_and_reports_failures(tmp_path, rebuilders) -> None:
    rbs, path = rebuilders
    bundle = tmp_path / "bundle"
    stale = bundle / "rb2/sources/hello/1.0-1/metadata"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"what rb2 said yesterday")
    rbs[0].server.fault = Fault.status(500)
    report = collect(load_policy(path), [artifact()], bundle)
    assert not stale.exists()  # rb2 no longer has it: neither has the bundle
    [error] = report.by_status("error")
    assert error.rebuilder == "rb1" and "HTTP 500" in error.detail and not report.complete
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    assert [e["rebuilder"] for e in manifest["errors"]] == ["rb1"] and manifest["documents"] == []


def test_collect_rebuilderd_lookup_and_attestations(tmp_path, rebuilder_server) -> None:
    server = rebuilder_server()
    page = b'{"records": [{"name": "foo", "build_id": 7, "artifact_id": 9}]}'
    server.faults["/api/v1/packages/binary"] = Fault.body(page)
    (server.root / "api/v1/builds/7/artifacts/9").mkdir(parents=True)
    (server.root / "api/v1/builds/7/artifacts/9/attestation").write_bytes(b"the attestation")
    [rb] = make_rebuilders(tmp_path, 1)
    path = write_policy(tmp_path / "policy.toml", [rb.entry(layout="rebuilderd")])
    text = path.read_text().replace(rb.url, server.url)
    path.write_text(text)
    art = Artifact("foo_1:2.0_amd64.deb", "a" * 64, name="foo", version="1:2.0", arch="amd64")
    bundle = tmp_path / "bundle"
    collect(load_policy(path), [art], bundle)
    assert (bundle / "rb1/api/v1/packages/binary/foo/1:2.0/amd64.json").read_bytes() == page
    assert (bundle / "rb1/api/v1/builds/7/artifacts/9/attestation").read_bytes() == b"the attestation"


def test_collect_is_parallel_and_bounded(tmp_path, rebuilder_server) -> None:
    rbs = make_rebuilders(tmp_path, 3, lambda root: rebuilder_server(root, latency=0.1))
    arts = []
    for i in range(30):
        for rb in rbs:
            rb.publish(f"p{i}", "1.0-1", {f"p{i}_1.0-1_all.deb": b"x"})
        arts.append(artifact(f"p{i}", b"x"))
    path = write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], fetch={"max_workers": 32})
    started = time.monotonic()
    report = collect(load_policy(path), arts, tmp_path / "bundle")
    elapsed = time.monotonic() - started
    assert len(report.by_status("collected")) == 90 and report.complete
    assert elapsed < 3.0, elapsed  # one after another: 90 x 0.1 s = 9 s; 32 at a time: ~0.3 s
    assert sum(len(rb.server.requests) for rb in rbs) == 90  # one request per document


def test_collect_command_needs_no_keys_and_shows_progress(tmp_path, rebuilders) -> None:
    rbs, path = rebuilders
    for key in tmp_path.rglob("*.pem"):  # the UpdateVM holds the policy, not the keys
        key.unlink()
    deb = build_deb(tmp_path / "debs", "hello", "1.0-1")
    out = tmp_path / "bundle"
    result = run("collect", "--policy", str(path), "-o", str(out), "--tar", str(tmp_path / "b.tar"), str(deb))
    assert result.returncode == 0, result
    assert "rebuildgate: collect: evidence for 1 of 1 package(s)" in result.stderr  # plain lines: no tty
    assert "\r" not in result.stderr
    assert "1 document(s) collected, 1 missing" in result.stdout
    assert (out / "rb1/sources/hello/1.0-1/metadata").is_file() and (tmp_path / "b.tar").is_file()
    verify = run("verify", "--policy", str(path), str(deb))
    assert verify.returncode == 2 and "policy error" in verify.stderr  # verifying does need them
    rbs[1].server.fault = Fault.status(500)
    result = run("collect", "--policy", str(path), "-o", str(out), "--artifact", FILE, "--sha256",
                 digests(CONTENT)["sha256"])
    assert result.returncode == 1 and "rb2" in result.stderr and "HTTP 500" in result.stderr, result
    result = run("collect", "--policy", str(path), "-o", str(out))
    assert result.returncode == 2 and "nothing to collect" in result.stderr
