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


def _settled_by_jobs(monkeypatch) -> list[tuple[str, str]]:
    """(rebuilder, package) of every job that runs (the cached shortcut runs none)."""
    ran: list[tuple[str, str]] = []
    original = Verifier._run_job

    async def counting(self, rebuilder, artifact, job):
        ran.append((rebuilder.name, artifact.name))
        return await original(self, rebuilder, artifact, job)

    monkeypatch.setattr(Verifier, "_run_job", counting)
    return ran


def test_cached_votes_settle_without_a_job_and_give_the_verdicts_the_rebuilders_give(
        tmp_path, rebuilder_server, monkeypatch) -> None:
    """Warm, a rebuilder whose cached documents vote is settled straight from
    the cache; one whose entry is garbage or missing runs a job and is asked.
    Every verdict is the one the cold run (all asked) gave."""
    rbs = make_rebuilders(tmp_path, 2, rebuilder_server)
    arts = []
    for name in ("alpha", "beta", "gamma"):
        content = f"{name} build\n".encode()
        for rb in rbs:
            rb.publish(name, "1.0-1", {f"{name}_1.0-1_all.deb": content})
        arts.append(Artifact(f"{name}_1.0-1_all.deb", digests(content)["sha256"], name=name, source=name,
                             version="1.0-1", arch="all"))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o755)
    policy = load_policy(write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], threshold=2,
                                      fetch={"cache_dir": str(cache_dir), "cache_ttl": 3600}))
    cache = DocumentCache(cache_dir, 3600, policy.fetch.max_bytes)

    def asked() -> list[str]:
        return sorted(f"{rb.name}:{r.split('/')[2]}" for rb in rbs for r in rb.server.requests)

    def outline(verdicts) -> list[tuple]:
        return [(v.accepted, v.vote_count, v.conflict_count, v.reason) for v in verdicts]

    with Verifier(policy) as v:
        cold = v.verify_many(arts)
        assert v.transport.flush_cache(5.0)
    assert all(v.accepted for v in cold) and len(asked()) == 6
    plant(cache, rbs[0].url + "/sources/beta/1.0-1/metadata", b"garbage")
    for rb in rbs:
        cache._path(rb.url + "/sources/gamma/1.0-1/metadata").unlink()
    for rb in rbs:
        rb.server.requests.clear()
    jobs = _settled_by_jobs(monkeypatch)
    with Verifier(policy) as v:
        warm = v.verify_many(arts)
    assert outline(warm) == outline(cold)
    assert sorted(jobs) == [("rb1", "beta"), ("rb1", "gamma"), ("rb2", "gamma")]
    assert asked() == ["rb1:beta", "rb1:gamma", "rb2:gamma"]


def test_a_rebuilder_over_its_cpu_budget_is_not_checked_from_the_cache(world, monkeypatch) -> None:
    """The shortcut keeps the budgets: a rebuilder whose documents overdrew the
    CPU budget has nothing checked, cached or not, and says why."""
    from rebuildgate import budget, verify

    rb, policy, cache, url = world
    assert verdict(policy).accepted
    checked: list[str] = []
    original = verify.verify_document
    monkeypatch.setattr(verify, "verify_document", lambda body, keys, where, *a: checked.append(where) or
                        original(body, keys, where, *a))
    with Verifier(policy) as v:
        account = v.sources[rb.name].check_account
        for _ in range(budget.COSTLY_LIMIT):
            v.transport.budgets.failed_check(account, budget.COSTLY_CPU)
        got = v.verify_many([ART])[0]
    assert not got.accepted and got.vote_count == 0
    assert "not asked again" in got.reason or any("not asked again" in p.message for _, p in got.errors)
    assert checked == [] and requests(rb) == 1


def test_a_cache_read_that_hangs_leaves_the_verdict_to_the_rebuilder_in_bounded_time(world, monkeypatch) -> None:
    """The shortcut reads the cache as a fetch does: stuck in the disk, it gives
    up within a quarter of the deadline and the rebuilder is asked."""
    import threading

    rb, policy, cache, url = world
    assert verdict(policy).accepted and requests(rb) == 1
    stuck = threading.Event()
    monkeypatch.setattr(DocumentCache, "get_many", lambda self, urls, now=None: stuck.wait(30) or [None] * len(urls))
    try:
        started = time.monotonic()
        got = verdict(policy)
        took = time.monotonic() - started
    finally:
        stuck.set()
    assert got.accepted and requests(rb) == 2
    assert took < policy.fetch.deadline * 0.5, took


def test_a_document_missing_from_the_cache_is_looked_for_there_once(world, monkeypatch) -> None:
    """The shortcut's miss is remembered: the job that then asks the rebuilder
    does not read the cache for the same URL again."""
    rb, policy, cache, url = world
    looked: list[str] = []
    original = DocumentCache.get_many
    monkeypatch.setattr(DocumentCache, "get_many", lambda self, urls, now=None: looked.extend(urls) or
                        original(self, urls, now))
    assert verdict(policy).accepted and requests(rb) == 1
    assert looked == [url]


def verdict_preloaded(policy, documents: dict[str, bytes]):
    with Verifier(policy) as v:
        v.transport.preload_cache(documents)
        return v.verify_many([ART])[0]


@pytest.mark.parametrize("kind", ["garbage", "foreign", "outdated", "other-key"])
def test_a_handed_over_document_that_does_not_vote_is_fetched_again(world, tmp_keys, kind) -> None:
    """What an earlier process of the same apt run hands over obeys the cache's rules."""
    rb, policy, cache, url = world
    body = {
        "garbage": b"\x00not json at all",
        "foreign": sign_legacy(make_link({"other_1.0_all.deb": b"x"}), rb.key.signer),
        "outdated": sign_legacy(make_link({DEB: b"the build before a fix\n"}), rb.key.signer),
        "other-key": sign_legacy(make_link({DEB: CONTENT}), tmp_keys("ed25519").signer),
    }[kind]
    v = verdict_preloaded(policy, {url: body})
    assert v.accepted and v.vote_count == 1 and v.conflict_count == 0, v.reason
    assert requests(rb) == 1  # asked again, once


def test_a_handed_over_document_that_votes_spares_the_request_and_the_disk(world, monkeypatch) -> None:
    rb, policy, cache, url = world
    honest = rb.root.joinpath(METADATA[1:]).read_bytes()
    read: list[str] = []
    monkeypatch.setattr(DocumentCache, "get", lambda self, url, now=None: read.append(url))
    v = verdict_preloaded(policy, {url: honest})
    assert v.accepted and v.vote_count == 1 and requests(rb) == 0
    assert read == []  # served from memory, not looked for on disk


def test_held_writes_are_handed_over_instead_of_written(world) -> None:
    rb, policy, cache, url = world
    with Verifier(policy) as v:
        v.transport.hold_cache_writes()
        assert v.verify_many([ART])[0].accepted
        assert v.transport.flush_cache(5)
        assert not cache._path(url).exists()
        assert v.transport.held_cache_writes() == [(url, rb.root.joinpath(METADATA[1:]).read_bytes())]
        assert v.transport.held_cache_writes() == []  # handed over once


def test_writes_beyond_what_may_be_held_go_to_the_cache(world) -> None:
    rb, policy, cache, url = world
    with Verifier(policy) as v:
        v.transport.hold_cache_writes(max_bytes=10)  # the document is larger
        assert v.verify_many([ART])[0].accepted
        assert v.transport.flush_cache(5)
        assert v.transport.held_cache_writes() == []
    assert cache.get(url) == rb.root.joinpath(METADATA[1:]).read_bytes()
