"""Reading evidence from a bundle ([fetch] bundle, offline): paths, policy keys,
and a bundle written by a machine that may be hostile."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rebuildgate.collect import collect
from rebuildgate.errors import ConfigError, EvidenceMissing, FetchError
from rebuildgate.fetch import EvidenceSource, Transport
from rebuildgate.layouts import bundle_url, evidence_locations, rebuilderd_attestation, rebuilderd_lookup
from rebuildgate.model import Artifact
from rebuildgate.policy import FetchSettings, Rebuilder, load_policy
from rebuildgate.verify import Verifier

from tests.support.bundles import ATTACKS, attack, metadata_path
from tests.support.fifos import release_fifos
from tests.support.halts import HaltTeam
from tests.support.links import digests
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders

SHA = "ab" * 32
CONTENT = b"honest package"
FILE = "hello_1.0-1_all.deb"
MAX_BYTES = 64 * 1024


def rebuilder(layout: str, url: str = "https://rb.example/base", template: str | None = None) -> Rebuilder:
    return Rebuilder("rb1", url, layout, template, keys=(Path("/k"),))


def artifact(content: bytes = CONTENT, **kw) -> Artifact:
    fields = dict(filename=FILE, name="hello", source="hello", version="1.0-1", arch="all")
    fields.update(kw)
    return Artifact(sha256=digests(content)["sha256"], **fields)


# --- the mapping (layouts.py) ------------------------------------------------------


def test_bundle_paths_follow_each_layout() -> None:
    art = Artifact("libfoo1_2:1.0-1_amd64.deb", SHA, name="libfoo1", source="foo", version="2:1.0-1",
                   arch="amd64")
    [loc] = evidence_locations(rebuilder("package-rebuilder"), art)
    assert loc.url == "https://rb.example/base/sources/foo/1.0-1/metadata"
    assert loc.path == ("sources", "foo", "1.0-1", "metadata")
    [loc] = evidence_locations(rebuilder("template", template="{url}/by-hash/{sha256}/{filename}.link"), art)
    assert loc.path == ("by-hash", SHA, "libfoo1_2:1.0-1_amd64.deb.link")
    [loc] = evidence_locations(rebuilder("template", template="{url}/{name}%/{version}.link"), art)
    assert loc.url.endswith("/libfoo1%/2%3A1.0-1.link") and loc.path == ("libfoo1%", "2:1.0-1.link")  # raw on disk
    lookup = rebuilderd_lookup("https://rb.example", art)
    assert lookup.url.endswith("/api/v1/packages/binary?name=libfoo1&version=2%3A1.0-1&architecture=amd64")
    assert lookup.path == ("api", "v1", "packages", "binary", "libfoo1", "2:1.0-1", "amd64.json")
    att = rebuilderd_attestation("https://rb.example", 7, 9)
    assert att.relpath == "api/v1/builds/7/artifacts/9/attestation"
    assert bundle_url("/b/", "rb1", att) == "file:///b/rb1/api/v1/builds/7/artifacts/9/attestation"


@pytest.mark.parametrize("layout,template,known", [
    ("package-rebuilder", None, {"source": ".."}),
    ("package-rebuilder", None, {"version": "../../etc"}),
    ("template", "{url}/../{filename}", {}),
    ("template", "{url}/a//{filename}", {}),
    ("template", "{url}/{name}/./x", {}),
])
def test_unsafe_names_never_become_bundle_paths(layout, template, known) -> None:
    art = Artifact("x.deb", SHA, **{"name": "x", "version": "1", "arch": "all", **known})
    with pytest.raises(FetchError):
        evidence_locations(rebuilder(layout, template=template), art)
    with pytest.raises(FetchError, match="unsafe rebuilder name"):
        bundle_url("/b", "..", rebuilderd_attestation("https://rb.example", 1, 1))


# --- policy keys -------------------------------------------------------------------


@pytest.mark.parametrize("fetch,halt,key,words", [
    ({"bundle": "relative/dir"}, False, "fetch.bundle", "absolute"),
    ({"bundle": 5}, False, "fetch.bundle", "must be a string"),
    ({"offline": "yes"}, False, "fetch.offline", "true or false"),
    ({"offline": True}, False, "fetch.offline", "no [fetch] bundle"),
    ({"offline": True, "bundle": "/b"}, True, "halt.feeds", "file:// URL"),
])
def test_bundle_and_offline_policy_keys_are_checked(tmp_path, fetch, halt, key, words) -> None:
    [rb] = make_rebuilders(tmp_path, 1)
    entry = rb.entry()
    entry.url = "https://rb.example/x"
    tables = arrays = None
    if halt:
        team = HaltTeam(tmp_path)
        tables = team.tables()
        tables["halt"]["feeds"] = ["https://halts.example/feed.json"]
        arrays = team.arrays()
    path = write_policy(tmp_path / "policy.toml", [entry], fetch=fetch, tables=tables, arrays=arrays)
    with pytest.raises(ConfigError) as e:
        load_policy(path)
    assert key in str(e.value) and words in str(e.value) and str(path) in str(e.value)


def test_rebuilder_names_must_be_directories_when_a_bundle_is_set(tmp_path) -> None:
    [rb] = make_rebuilders(tmp_path, 1)
    for bad in ("a/b", "..", "manifest.json", "halt-feeds"):
        entry = rb.entry()
        entry.name = bad
        path = write_policy(tmp_path / "policy.toml", [entry], fetch={"bundle": str(tmp_path / "b")})
        with pytest.raises(ConfigError, match=r"rebuilder\[0\]\.name.*cannot name a directory"):
            load_policy(path)
    path = write_policy(tmp_path / "policy.toml", [rb.entry()], fetch={"bundle": str(tmp_path / "b"),
                                                                       "offline": True})
    policy = load_policy(path)
    assert policy.fetch.bundle == tmp_path / "b" and policy.fetch.offline is True
    assert any("offline: no network request" in line for line in policy.describe())


# --- reading --------------------------------------------------------------------


@pytest.fixture
def collected(tmp_path, rebuilder_server):
    """Two HTTP rebuilders attesting hello (rb1 also 'other'), collected into a bundle.

    Returns (rebuilders, bundle, policy(**fetch) -> Policy reading that bundle).
    """
    rbs = make_rebuilders(tmp_path, 2, rebuilder_server)
    for rb in rbs:
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    rbs[0].publish("other", "1.0-1", {"other_1.0-1_all.deb": b"other package"})
    bundle = tmp_path / "bundle"
    plain = load_policy(write_policy(tmp_path / "collect.toml", [rb.entry() for rb in rbs], threshold=2))
    report = collect(plain, [artifact(), artifact(b"other package", filename="other_1.0-1_all.deb", name="other",
                                                  source="other")], bundle)
    assert len(report.by_status("collected")) == 3 and len(report.by_status("missing")) == 1

    def policy(**fetch):
        settings = {"bundle": str(bundle), "offline": True, "max_bytes": MAX_BYTES, **fetch}
        return load_policy(write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=2,
                                        fetch=settings))
    return rbs, bundle, policy


def verify(policy, *arts):
    with Verifier(policy) as v:
        return v.verify_many(list(arts))


def requests(rbs) -> int:
    return sum(len(rb.server.requests) for rb in rbs)


def test_offline_verdict_from_a_collected_bundle_makes_no_request(collected) -> None:
    rbs, bundle, policy = collected
    before = requests(rbs)
    unknown = artifact(b"new", filename="new_1.0-1_all.deb", name="new", source="new")
    accepted, missing = verify(policy(), artifact(), unknown)
    assert accepted.accepted and accepted.vote_count == 2, accepted.reason
    assert not missing.allowed and sorted(missing.missing) == ["rb1", "rb2"]
    assert requests(rbs) == before  # offline: not one request, not even for what the bundle lacks


def test_without_offline_a_document_missing_from_the_bundle_is_fetched(collected) -> None:
    rbs, bundle, policy = collected
    metadata_path(bundle, "rb2", "hello", "1.0-1").unlink()
    before = len(rbs[1].server.requests)
    [v] = verify(policy(offline=False), artifact())
    assert v.accepted and v.vote_count == 2
    assert rbs[1].server.requests[before:] == ["/sources/hello/1.0-1/metadata"]
    [v] = verify(policy(), artifact())
    assert not v.accepted and v.missing == ("rb2",)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ATTACKS)
def test_hostile_bundle_documents_give_no_vote(collected, tmp_path, kind) -> None:
    rbs, bundle, policy = collected
    other = metadata_path(bundle, "rb1", "other", "1.0-1")
    planted = attack(kind, bundle, "rb1", "hello", "1.0-1", other=other, outside=tmp_path / "outside",
                     max_bytes=MAX_BYTES)
    before = requests(rbs)
    started = time.monotonic()
    try:
        [v] = verify(policy(), artifact())
    finally:
        if kind == "fifo":
            release_fifos([planted])
    assert time.monotonic() - started < 5
    assert not v.allowed and [vote.rebuilder for vote in v.votes] == ["rb2"], v.reason
    problems = dict(v.errors)
    if kind == "document-for-another-file":
        assert "rb1" in v.missing  # validly signed, but it does not name this file
    else:
        assert "rb1" in problems or "rb1" in v.missing, v.reason
    if kind in ("symlinked-document", "symlinked-rebuilder-directory", "fifo", "directory", "huge-document"):
        assert problems["rb1"].kind == "fetch-error", v.reason
    assert requests(rbs) == before


def test_reading_never_leaves_the_bundle(tmp_path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "rb1").mkdir(parents=True)
    (tmp_path / "secret").write_bytes(b"outside")
    transport = Transport(FetchSettings(cache_dir=None, bundle=bundle, offline=True, deadline=2.0))
    try:
        root = f"file://{bundle}/rb1"
        with pytest.raises(FetchError, match="not a path inside the evidence bundle"):
            transport.get(f"{root}/../../secret", time.monotonic() + 2, root)
        with pytest.raises(FetchError, match="offline"):
            transport.get("http://127.0.0.1:9/doc", time.monotonic() + 2)
        with pytest.raises(EvidenceMissing):
            transport.get(f"{root}/sources/x/1/metadata", time.monotonic() + 2, root)
        # The admin's own path to the bundle may be a symlink; only what lies below it is the writer's.
        link = tmp_path / "bundle-link"
        link.symlink_to(bundle)
        (bundle / "rb1" / "doc").write_bytes(b"evidence")
        t2 = Transport(FetchSettings(cache_dir=None, bundle=link, offline=True, deadline=2.0))
        try:
            assert t2.get(f"file://{link}/rb1/doc", time.monotonic() + 2, f"file://{link}/rb1") == b"evidence"
        finally:
            t2.close()
    finally:
        transport.close()


def test_rebuilderd_documents_are_read_from_their_bundle_paths(tmp_path) -> None:
    bundle = tmp_path / "bundle"
    art = Artifact("foo_1:2.0_amd64.deb", SHA, name="foo", version="1:2.0", arch="amd64")
    lookup = bundle / "rb1" / "api/v1/packages/binary/foo/1:2.0/amd64.json"
    lookup.parent.mkdir(parents=True)
    lookup.write_bytes(b'{"records": [{"name": "foo", "build_id": 7, "artifact_id": 9}]}')
    att = bundle / "rb1" / "api/v1/builds/7/artifacts/9/attestation"
    att.parent.mkdir(parents=True)
    att.write_bytes(b"the link")
    transport = Transport(FetchSettings(cache_dir=None, bundle=bundle, offline=True, deadline=2.0))
    try:
        source = EvidenceSource(rebuilder("rebuilderd", "http://127.0.0.1:9"), transport)
        [doc] = source.documents(art, time.monotonic() + 2)
        assert doc.body == b"the link" and doc.url == f"file://{att}"
    finally:
        transport.close()
    os.unlink(att)
    transport = Transport(FetchSettings(cache_dir=None, bundle=bundle, offline=True, deadline=2.0))
    try:
        with pytest.raises(EvidenceMissing):  # offline: never asked of 127.0.0.1:9
            EvidenceSource(rebuilder("rebuilderd", "http://127.0.0.1:9"), transport).documents(
                art, time.monotonic() + 2)
    finally:
        transport.close()


def test_a_directory_where_a_file_rebuilder_document_should_be_is_missing(tmp_path) -> None:
    """Outside a bundle a directory is "no evidence" (it once escaped as an
    IsADirectoryError from os.fdopen and cost the vote as an internal error)."""
    (tmp_path / "rb" / "sources/x/1/metadata").mkdir(parents=True)
    transport = Transport(FetchSettings(cache_dir=None, deadline=2.0))
    try:
        with pytest.raises(EvidenceMissing, match="a directory"):
            transport.get(f"file://{tmp_path}/rb/sources/x/1/metadata", time.monotonic() + 2, f"file://{tmp_path}/rb")
    finally:
        transport.close()
