"""Fetch evidence ahead of time, so that the install pays no rebuilder round trips.

After ``apt-get update`` the packages an upgrade would bring are known, but
nobody has said yes yet.  When the admin asks for it (``[fetch] warm_up =
true``; off by default: it makes requests nobody asked for, and tells every
rebuilder what this machine is about to install), :func:`warm_cache` fetches
every governing rebuilder's documents for those packages into the evidence
cache (:mod:`rebuildgate.cache`), in the background, bounded in packages
(``warm_up_packages``) and in time (``warm_up_seconds``, and each request by
the usual fetch deadline).

It verifies and decides nothing, and writes no decision log line: a cached
document is verified again when it is used, and one that gives no vote is
fetched afresh then.  So a warm-up can only save requests, never change a
verdict, and a warm-up that fails, is cut short or is never run costs
nothing but those requests later.  Documents a rebuilder does not have are
not remembered (a negative answer may change any minute).

Evidence for an exact file does not change, so cached documents stay
``cache_ttl`` seconds (a day by default); the warm-up, which runs as root
after every update, also removes entries that have expired.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import CancelledError, wait
from dataclasses import dataclass, field
from typing import Sequence

from .fetch import EvidenceMissing, EvidenceSource, FetchError, make_transport
from .model import Artifact
from .policy import Policy
from .proxy import ProxyArg

#: Seconds to wait for the cache writes queued when the fetching is done.
FLUSH = 10.0


@dataclass
class WarmUpReport:
    """What one warm-up did, for its summary line (and tests)."""

    packages: int = 0  # packages whose evidence was asked for
    skipped: int = 0  # over the package limit, or not gated by the policy
    fetched: int = 0  # (package, rebuilder) pairs that gave documents from the network
    cached: int = 0  # ... that were in the cache already
    missing: int = 0  # ... the rebuilder has nothing for
    failed: int = 0  # ... errors, timeouts, the time limit
    expired_removed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few, for the log

    def summary(self) -> str:
        return (f"warm-up: evidence for {self.packages} package(s) in {self.seconds:.1f}s: {self.fetched} fetched, "
                f"{self.cached} already cached, {self.missing} missing, {self.failed} failed"
                + (f"; {self.skipped} package(s) skipped" if self.skipped else "")
                + (f"; {self.expired_removed} expired cache entries removed" if self.expired_removed else ""))


def warm_cache(policy: Policy, artifacts: Sequence[Artifact], proxy: ProxyArg = None) -> WarmUpReport:
    """Fetch the documents each governing rebuilder has for *artifacts* into the cache.

    Only packages the policy gates are fetched for, and only from the
    rebuilders that would vote on them; at most ``warm_up_packages`` of
    them, within ``warm_up_seconds``.  Nothing is fetched without a cache
    to put it in.  Never raises for a rebuilder's trouble.
    """
    started = time.monotonic()
    settings = policy.fetch
    report = WarmUpReport()
    if settings.cache_dir is None or settings.cache_ttl <= 0 or settings.offline:
        report.skipped = len(artifacts)
        return report
    work: list[tuple[Artifact, tuple]] = []
    for artifact in artifacts:
        rebuilders = policy.resolve(artifact).rebuilders
        if not rebuilders or len(work) >= settings.warm_up_packages:
            report.skipped += 1
            continue
        work.append((artifact, rebuilders))
    report.packages = len(work)
    transport = make_transport(settings, proxy)
    try:
        if transport.cache is not None:
            report.expired_removed = transport.cache.remove_expired()
        sources = {rb.name: EvidenceSource(rb, transport) for rb in policy.rebuilders}
        end = started + settings.warm_up_seconds
        run = transport.run(_fetch_all(transport, sources, work, end, report))
        try:
            run.result(timeout=max(end - time.monotonic(), 0.0) + 2.0)
        except (TimeoutError, CancelledError):
            run.cancel()
            wait([run], timeout=2.0)  # its last counts are settled on the loop
        transport.flush_cache(FLUSH)
    finally:
        transport.close()
    report.seconds = time.monotonic() - started
    return report


async def _fetch_all(transport, sources: dict[str, EvidenceSource], work: list[tuple[Artifact, tuple]],  # noqa: ANN001
                     end: float, report: WarmUpReport) -> None:
    async def one(source: EvidenceSource, artifact: Artifact) -> None:
        async with transport.slots():
            deadline = min(time.monotonic() + transport.settings.deadline, end)
            try:
                async with asyncio.timeout_at(deadline + 0.2):
                    documents = await source.fetch_documents(artifact, deadline)
            except EvidenceMissing:
                report.missing += 1
            except (FetchError, TimeoutError) as e:
                _note(report, f"{source.rebuilder.name}: {artifact.label}: {e or 'no answer in time'}")
            except Exception as e:  # noqa: BLE001 - a bug costs this document, never the rest
                _note(report, f"{source.rebuilder.name}: {artifact.label}: internal error: {e!r:.200}")
            else:
                if documents and all(d.cached for d in documents):
                    report.cached += 1
                else:
                    report.fetched += 1

    pairs = [(sources[rb.name], artifact) for artifact, rebuilders in work for rb in rebuilders]
    try:
        await asyncio.gather(*(one(source, artifact) for source, artifact in pairs))
    finally:  # failed: every pair that gave neither documents nor "missing" (errors, the time limit)
        report.failed = len(pairs) - report.fetched - report.cached - report.missing


def _note(report: WarmUpReport, error: str) -> None:
    if len(report.errors) < 5:
        report.errors.append(error)
