"""The warm-up fills the evidence cache ahead of time; it never decides anything.

Rebuilders on 127.0.0.1; the requests they see are counted: after a
warm-up, verifying the same packages makes no request at all, and a
verdict is the one the rebuilders' documents give (a warm-up of forged
documents changes nothing).
"""

from __future__ import annotations

import os
import time

from rebuildgate.cache import DocumentCache
from rebuildgate.model import Artifact
from rebuildgate.policy import load_policy
from rebuildgate.verify import Verifier
from rebuildgate.warmup import warm_cache
from tests.support.links import digests
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders


def _artifact(name: str, content: bytes) -> Artifact:
    return Artifact(f"{name}_1.0-1_all.deb", digests(content)["sha256"], name=name, source=name, version="1.0-1",
                    arch="all", repo="deb.example.org/debian")


def _world(tmp_path, rebuilder_server, count: int = 3, **fetch):
    rebuilders = make_rebuilders(tmp_path, 2, rebuilder_server)
    artifacts = []
    for i in range(count):
        content = f"package {i}\n".encode()
        for rb in rebuilders:
            rb.publish(f"p{i}", "1.0-1", {f"p{i}_1.0-1_all.deb": content})
        artifacts.append(_artifact(f"p{i}", content))
    cache_dir = tmp_path / "cache"
    policy = load_policy(write_policy(tmp_path / "p.toml", [rb.entry() for rb in rebuilders], threshold=2,
                                      fetch={"cache_dir": str(cache_dir), "warm_up": True, **fetch}))
    return rebuilders, artifacts, policy, cache_dir


def _requests(rebuilders) -> int:
    return sum(len(rb.server.requests) for rb in rebuilders)


def test_after_a_warm_up_verifying_makes_no_request(tmp_path, rebuilder_server) -> None:
    rebuilders, artifacts, policy, _ = _world(tmp_path, rebuilder_server)
    report = warm_cache(policy, artifacts)
    assert (report.packages, report.fetched, report.cached, report.missing, report.failed) == (3, 6, 0, 0, 0)
    asked = _requests(rebuilders)
    assert asked == 6
    with Verifier(policy) as verifier:
        verdicts = verifier.verify_many(artifacts)
    assert all(v.accepted and v.vote_count == 2 for v in verdicts), [v.reason for v in verdicts]
    assert _requests(rebuilders) == asked  # every document came from the cache
    again = warm_cache(policy, artifacts)  # a second warm-up asks nobody either
    assert (again.fetched, again.cached) == (0, 6) and _requests(rebuilders) == asked


def test_a_warm_up_writes_no_decision_and_cannot_change_a_verdict(tmp_path, rebuilder_server) -> None:
    """It fetches what a rebuilder serves now, forged or not; the verdict comes
    from verifying it when it is used, and a document that gives no vote is
    fetched afresh then."""
    rebuilders, artifacts, policy, _ = _world(tmp_path, rebuilder_server, count=1)
    honest = rebuilders[0].root.joinpath("sources/p0/1.0-1/metadata")
    real = honest.read_bytes()
    honest.write_bytes(real.replace(b'"sha256"', b'"sha256 "', 1))  # a forgery served at warm-up time
    assert policy.log is not None
    warm_cache(policy, artifacts)
    assert not policy.log.exists()
    honest.write_bytes(real)  # the rebuilder serves the real one again
    with Verifier(policy) as verifier:
        [verdict] = verifier.verify_many(artifacts)
    assert verdict.accepted and verdict.vote_count == 2, verdict.reason


def test_bounded_in_packages_and_time(tmp_path, rebuilder_server) -> None:
    rebuilders, artifacts, policy, _ = _world(tmp_path, rebuilder_server, count=3, warm_up_packages=2)
    report = warm_cache(policy, artifacts)
    assert (report.packages, report.skipped, report.fetched) == (2, 1, 4)
    assert _requests(rebuilders) == 4

    rebuilders, artifacts, policy, _ = _world(tmp_path / "slow", rebuilder_server, count=2, warm_up_seconds=0.5)
    for rb in rebuilders:
        rb.server.latency = 3.0
    started = time.monotonic()
    report = warm_cache(policy, artifacts)
    assert time.monotonic() - started < 3.0
    assert report.failed == 4 and report.fetched == 0


def test_nothing_without_a_cache_or_when_offline(tmp_path, rebuilder_server) -> None:
    rebuilders, artifacts, policy, _ = _world(tmp_path, rebuilder_server, cache_dir="")
    report = warm_cache(policy, artifacts)
    assert (report.packages, report.skipped) == (0, 3) and _requests(rebuilders) == 0


def test_expired_entries_are_removed(tmp_path, rebuilder_server) -> None:
    rebuilders, artifacts, policy, cache_dir = _world(tmp_path, rebuilder_server, count=1, cache_ttl=60)
    warm_cache(policy, artifacts)
    cache = DocumentCache(cache_dir, 60, policy.fetch.max_bytes)
    entries = sorted(p for p in cache_dir.iterdir() if len(p.name) == 64)
    assert len(entries) == 2
    old = time.time() - 3600
    os.utime(entries[0], (old, old))
    assert cache.remove_expired() == 1
    assert sorted(p for p in cache_dir.iterdir() if len(p.name) == 64) == entries[1:]
