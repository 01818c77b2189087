"""The evidence cache may save requests, never change a verdict.

A rebuilder on 127.0.0.1 publishes an honest link; the on-disk cache is then
filled with what a broken disk, a foreign rebuilder, an old attestation or a
wrong clock leave there.  The verdict must be the one the rebuilder gives
now (it is asked again, once), and a good cached document must spare the
request.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rebuildgate.cache import DocumentCache
from rebuildgate.model import Artifact
from rebuildgate.policy import load_policy
from rebuildgate.verify import Verifier
from tests.support.links import digests, make_link, sign_legacy
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders

DEB = "hello_1.0-1_all.deb"
CONTENT = b"honest build\n"
ART = Artifact(DEB, digests(CONTENT)["sha256"], name="hello", source="hello", version="1.0-1", arch="all")
METADATA = "/sources/hello/1.0-1/metadata"


@pytest.fixture
def world(tmp_path, rebuilder_server):
    rb = make_rebuilders(tmp_path, 1, rebuilder_server)[0]
    rb.publish("hello", "1.0-1", {DEB: CONTENT})
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o755)
    policy = load_policy(write_policy(tmp_path / "p.toml", [rb.entry()],
                                      fetch={"cache_dir": str(cache_dir), "cache_ttl": 3600}))
    url = rb.url + METADATA
    return rb, policy, DocumentCache(cache_dir, 3600, policy.fetch.max_bytes), url


def verdict(policy):
    with Verifier(policy) as v:
        return v.verify_many([ART])[0]


def requests(rb) -> int:
    return sum(1 for r in rb.server.requests if r.endswith(METADATA))


def plant(cache: DocumentCache, url: str, body: bytes, mtime: float | None = None) -> Path:
    cache.put(url, body)
    path = cache._path(url)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign", "outdated", "other-key"])
def test_a_cached_document_that_does_not_vote_is_fetched_again(world, tmp_keys, kind) -> None:
    rb, policy, cache, url = world
    honest = sign_legacy(make_link({DEB: CONTENT}), rb.key.signer)
    body = {
        "garbage": b"\x00not json at all",
        "truncated": honest[: len(honest) // 2],
        "foreign": sign_legacy(make_link({"other_1.0_all.deb": b"x"}), rb.key.signer),
        "outdated": sign_legacy(make_link({DEB: b"the build before a fix\n"}), rb.key.signer),  # a conflict now
        "other-key": sign_legacy(make_link({DEB: CONTENT}), tmp_keys("ed25519").signer),  # keys were rotated
    }[kind]
    path = plant(cache, url, body)
    v = verdict(policy)
    assert v.accepted and v.vote_count == 1 and v.conflict_count == 0, v.reason
    assert requests(rb) == 1  # asked again, once
    deadline = time.monotonic() + 5
    while path.read_bytes() != url.encode() + b"\n" + rb.root.joinpath(METADATA[1:]).read_bytes():
        assert time.monotonic() < deadline, "the fresh answer did not replace the cached one"
        time.sleep(0.05)


def test_a_cached_document_that_votes_spares_the_request(world) -> None:
    rb, policy, cache, url = world
    assert verdict(policy).accepted and requests(rb) == 1
    deadline = time.monotonic() + 5
    while not cache._path(url).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    v = verdict(policy)
    assert v.accepted and requests(rb) == 1  # from the cache, verified again


@pytest.mark.parametrize("offset", [+86400, -7200])
def test_a_cache_entry_from_the_future_or_past_its_ttl_is_a_miss(world, offset) -> None:
    rb, policy, cache, url = world
    stale = sign_legacy(make_link({DEB: b"what a wrong clock kept\n"}), rb.key.signer)
    plant(cache, url, stale, mtime=time.time() + offset)
    assert cache.get(url) is None
    v = verdict(policy)
    assert v.accepted and v.conflict_count == 0 and requests(rb) == 1


def test_a_rebuilder_that_is_down_cannot_be_replaced_by_a_bad_cache_entry(world) -> None:
    rb, policy, cache, url = world
    plant(cache, url, b"garbage")
    rb.server.stop()
    v = verdict(policy)
    assert not v.accepted and v.vote_count == 0
    assert [p.kind for _, p in v.errors] == ["fetch-error"]  # the fresh attempt's answer, not the garbage
