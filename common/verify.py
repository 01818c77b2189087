"""Verification of whole transactions: the API the front ends call.

:class:`Verifier` loads the policy's keys once, then verifies artifacts in
parallel across packages and rebuilders.  apt calls :meth:`Verifier.submit`
as soon as it queues a download, so evidence is fetched while the package
downloads; dnf and the CLI call :meth:`Verifier.verify_many` for a whole
transaction.  Nothing here raises for a per-package problem: each becomes
part of a blocking :class:`~rebuildgate.decide.Verdict` (fail closed).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ALL_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from . import budget
from .decide import HaltNotice, Rule, Verdict, decide, failed, votes
from .decisionlog import DecisionLog
from .errors import EvidenceError, EvidenceMissing, FetchError
from .evidence import KeySet, load_keyset, verify_document
from .fetch import CACHE_SHARE, Document, EvidenceSource, make_transport
from .model import Artifact, Problem, RebuilderReport, SignedLink
from .policy import Policy, Rebuilder
from .pool import FairPool

log = logging.getLogger("rebuildgate")

DEFAULT_LOG = Path("/var/log/rebuildgate/decisions.log")
#: Threads for signature checks (they release the GIL).
CHECKERS = max(1, min(os.cpu_count() or 1, 4))
#: At most this many documents, and bytes of them, in one checker task (see Verifier._hand_checks).
CHECK_BATCH = 16
CHECK_BATCH_BYTES = 256 * 1024


@dataclass
class _Job:
    """One rebuilder's part of one artifact; its deadline starts when it runs.

    At most ``max_workers`` jobs run at once.  Counting from submission
    would time out packages of a large transaction whose rebuilders are
    fine but whose turn had not come.  A job that has not started is waited
    for only while jobs keep starting and ending (see
    :meth:`PendingVerdict._limit`).  ``report`` is set on the fetcher's
    loop when the job ends.
    """

    rebuilder: str
    started: float | None = None
    report: RebuilderReport | None = None


@dataclass(frozen=True)
class DecisionInputs:
    """Everything one verdict is decided on: ``decide(artifact, rule, reports)``
    gives it again (:meth:`PendingVerdict.inputs`).

    The evidence (``reports``) does not depend on the rule, so the same
    fetched evidence can be judged under another threshold, ``max_conflicts``
    or set of rebuilders by calling :func:`~rebuildgate.decide.decide` with a
    changed :class:`~rebuildgate.decide.Rule`: the rule stays in one place and
    nothing is fetched twice.
    """

    artifact: Artifact
    rule: Rule
    reports: tuple[RebuilderReport, ...]


def _timed_out(rebuilder: str, deadline: float) -> RebuilderReport:
    return RebuilderReport(rebuilder, (), (Problem("timeout", f"no answer within the deadline of {deadline:g}s"),))


class PendingVerdict:
    """A verdict being computed; :meth:`result` waits for it (bounded)."""

    #: Grace after a job's deadline for it to notice and return.
    GRACE = 1.0

    def __init__(self, verifier: "Verifier", artifact: Artifact, rule: Rule, jobs: list[_Job],
                 running: "Future[Any] | None") -> None:
        self._verifier = verifier
        self.artifact = artifact
        self._rule = rule
        self._jobs = jobs
        self._running = running
        self._submitted = time.monotonic()
        self._verdict: Verdict | None = None
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._verdict is not None or self._running is None or self._running.done()

    def _limit(self, job: _Job) -> float:
        """Until when :meth:`result` waits for *job*.

        A running job ends by its deadline.  A queued one waits for a slot,
        and while the fetcher is healthy a slot frees up at least once per
        deadline (every running job ends by then), so a queue of any length
        keeps moving: it is waited for as long as some job started or ended
        within the last deadline.  When nothing has moved for a whole
        deadline the fetcher is stuck, and the queued job fails closed then,
        about one deadline after the last sign of life, not after minutes.
        """
        deadline = self._verifier.policy.fetch.deadline + self.GRACE
        if job.started is None:
            return max(self._submitted, self._verifier.last_progress) + deadline
        return job.started + deadline

    def _wait(self) -> None:
        """Until every job is done or past its own limit; no busy loop.

        The jobs' own timeouts end them at their deadlines; the limits here
        only matter if the fetcher itself were stuck, and then the verdict
        still comes, blocking, in bounded time.
        """
        while (until := self._waiting_until()) is not None:
            wait([self._running], timeout=min(until - time.monotonic(), 1.0))

    def _waiting_until(self) -> float | None:
        """Until when :meth:`_wait` would still wait now (None: it would not)."""
        if self._running is None or self._running.done():
            return None
        now = time.monotonic()
        return max((limit for j in self._jobs if j.report is None and now < (limit := self._limit(j))), default=None)

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call *fn* once every job has ended (at once if they have).

        It runs on the fetcher's loop thread: front ends use it to answer
        the moment a verdict can be given, with no thread to wake; it must
        not block.
        """
        if self._running is None:
            fn()
        else:
            self._running.add_done_callback(lambda _f: fn())

    def result(self, file: Artifact | None = None) -> Verdict:
        """The verdict (waiting, bounded, for the rebuilders).

        *file* is the package as its own file describes it (name, version,
        source, arch: :func:`rebuildgate.pkginfo.read_identity`), once the
        front end has it: halts and the allowlist are then judged on that,
        not on what the repository index said.  The first call decides;
        later calls return the same verdict.
        """
        if self._verdict is None:
            self._wait()  # outside the lock: a done-callback must never wait for a waiting thread
            with self._lock:
                if self._verdict is None:
                    self._verdict = self._conclude(file)
            # Only now, with the verdict stored and the lock released: cancelling
            # runs the done-callbacks on this thread, and they call result().
            if self._running is not None and not self._running.done():
                self._running.cancel()
        return self._verdict

    def inputs(self) -> DecisionInputs:
        """What the verdict is decided on, once the rebuilders have answered
        (waiting as :meth:`result` does), without deciding, logging or warning.

        For read-only callers that judge the evidence themselves with the
        same :func:`~rebuildgate.decide.decide`, possibly under other rules
        (``rebuildgate status --what-if``), and must not fetch it again.
        """
        self._wait()
        return self._inputs(None)

    def _inputs(self, file: Artifact | None) -> DecisionInputs:
        reports = []
        for job in self._jobs:
            report = job.report
            if report is None:
                report = _timed_out(job.rebuilder, self._verifier.policy.fetch.deadline)
            reports.append(report)
        artifact, rule = self.artifact, self._rule
        if file is not None:
            artifact = artifact.with_file_identity(file)
            if artifact is not self.artifact:  # the index lied: judge halts and allowlist anew
                rule = self._verifier._rule(artifact)[0]
        return DecisionInputs(artifact, rule, tuple(reports))

    def _conclude(self, file: Artifact | None) -> Verdict:
        inputs = self._inputs(file)
        return self._verifier._finish(decide(inputs.artifact, inputs.rule, inputs.reports))


class Verifier:
    """Policy + keys + fetcher, reusable for many artifacts.

    Construction loads every key (raises ConfigError on a bad one), so a
    broken policy is reported before any package is looked at.  With a
    ``[halt]`` section, the halt feeds are read on the first artifact and
    every verdict carries the halts in force for it.
    """

    def __init__(self, policy: Policy, proxy: str | None = None, *,
                 today: Callable[[], _dt.date] = _dt.date.today,
                 halts: Callable[[Artifact], tuple] | None = None) -> None:
        self.policy = policy
        self.keysets: dict[str, KeySet] = {
            rb.name: load_keyset(rb, i, policy.path) for i, rb in enumerate(policy.rebuilders)}
        self.transport = make_transport(policy.fetch, proxy)
        self.sources = {rb.name: EvidenceSource(rb, self.transport) for rb in policy.rebuilders}
        self._checkers = FairPool(CHECKERS, "rbg-check")
        #: When a job last started or ended (monotonic; see PendingVerdict._limit).
        self.last_progress = time.monotonic()
        self._shares: dict[str, asyncio.Semaphore] = {}  # see _share; touched on the loop only
        self._today = today
        if halts is None and policy.halt is not None:
            from .halt import HaltWatch

            halts = HaltWatch(policy.halt, self.transport, policy.path)
        self._halts = halts
        self._log = DecisionLog(policy.log or DEFAULT_LOG)
        self._log_opened = False  # tried to open it (once: a log that cannot be opened is reported once)
        self._log_error: str | None = None
        self._checked: dict[tuple[str, str, bytes], SignedLink | Problem] = {}
        #: Checks asked for in this turn of the loop, by rebuilder (see _hand_checks; on the loop only).
        self._to_check: dict[str, list[tuple[EvidenceSource, list[Document], asyncio.Future]]] = {}
        self._log_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        self.transport.close()
        self._checkers.shutdown()
        with self._log_lock:
            self._closed = True  # a verdict concluded after this is not logged by a reopened file
            self._log.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(self) -> None:
        """Do now what needs the privileges a front end is about to drop.

        Reads the halt feeds and saves what they say (root owns the halt
        state); a failure is kept and fails every verdict later, with the
        reason, so this never raises.
        """
        refresh = getattr(self._halts, "refresh", None)
        if refresh is not None:
            try:
                refresh()
            except Exception as e:  # noqa: BLE001 - reported by every verdict (halt-error)
                log.debug("rebuildgate: halts: %s", e)

    def _rule(self, artifact: Artifact) -> tuple[Rule, tuple[Rebuilder, ...]]:
        """The policy's rule for *artifact*, with the halts in force for it.

        If the halts cannot be evaluated, that itself is a halt: nothing the
        admin relaxes (audit mode, the allowlist, an ungated repository) may
        let a package past a brake that could not be checked.
        """
        resolution = self.policy.resolve(artifact, self._today())
        rule = resolution.rule
        if self._halts is None:
            return rule, resolution.rebuilders
        try:
            halts = tuple(self._halts(artifact))
        except Exception as e:  # noqa: BLE001 - halts unreadable: fail closed
            halts = (HaltNotice("halt-error", f"halt-error: halts could not be evaluated: {e}", ("rebuildgate",),
                                kind="brake"),)
        return Rule(**{**rule.__dict__, "halts": halts}), resolution.rebuilders

    def submit(self, artifact: Artifact) -> PendingVerdict:
        """Start verifying *artifact* in the background."""
        rule, rebuilders = self._rule(artifact)
        jobs = [_Job(rb.name) for rb in rebuilders]
        running = None
        if jobs:
            try:
                running = self.transport.run(self._gather(artifact, rebuilders, jobs))
            except FetchError:  # the verifier was closed: no job runs, all report timeouts
                running = None
        return PendingVerdict(self, artifact, rule, jobs, running)

    def refuse(self, artifact: Artifact, problem: Problem) -> Verdict:
        """The verdict for an artifact that cannot be verified at all.

        For front ends that find a package unverifiable before asking any
        rebuilder (a repository that only gives an md5): the policy still
        decides (an ungated repository, audit mode or the allowlist may let
        it through, logged), halts still apply, and the verdict is logged
        like any other.
        """
        rule, _ = self._rule(artifact)
        return self._finish(failed(artifact, rule, problem))

    def verify_many(self, artifacts: Sequence[Artifact]) -> list[Verdict]:
        """Verify a whole transaction; the order of verdicts is the order given.

        The calling thread sleeps until every artifact's jobs have ended (or
        passed their limits, as :meth:`PendingVerdict.result` waits), then
        concludes them all: woken once, not once per artifact while the
        fetcher's loop and the checkers still need the interpreter.
        """
        pending = [self.submit(a) for a in artifacts]
        while True:
            limits = [(p._running, until) for p in pending if (until := p._waiting_until()) is not None]
            if not limits:
                break
            wait([running for running, _ in limits],
                 timeout=min(max(until for _, until in limits) - time.monotonic(), 1.0), return_when=ALL_COMPLETED)
        return [p.result() for p in pending]

    async def _gather(self, artifact: Artifact, rebuilders: Sequence[Rebuilder], jobs: list[_Job]) -> None:
        """All rebuilders of one artifact, concurrently, on the fetcher's loop:
        first whatever the on-disk cache answers (:meth:`_from_cache`), then a
        job for each rebuilder it did not."""
        left = list(zip(rebuilders, jobs))
        if self.transport.cache is not None:
            left = await self._from_cache(artifact, left)
        await asyncio.gather(*(self._run_job(rb, artifact, job) for rb, job in left))

    async def _from_cache(self, artifact: Artifact, work: list[tuple[Rebuilder, _Job]]) -> list[tuple[Rebuilder, _Job]]:
        """Settle the jobs whose rebuilder's documents are all in the on-disk
        cache and give a vote; the others (returned) run as usual.

        The report is the one :meth:`_report` would make from the same
        cached documents (the same checks, budgets and charges); it only
        skips what a job costs on the way (a job slot, its own timeout, a
        task per document), which in a warm 200-package, 5-rebuilder run
        cost more CPU than the signature checks.  Anything else (a miss,
        documents that give no vote, a rebuilder over its budget, no answer
        within a quarter of the deadline) leaves the job to run as usual, so
        the rule that a cached document which gives no vote is fetched
        afresh still holds.
        """
        started = time.monotonic()
        deadline = started + self.policy.fetch.deadline * CACHE_SHARE

        async def one(rebuilder: Rebuilder, job: _Job) -> None:
            source = self.sources[rebuilder.name]
            if self.transport.budgets.refusal(source.check_account) is not None:
                return
            documents = await source.cached_documents(artifact, deadline)
            if documents is None:
                return
            report = await self._check_documents(rebuilder, source, documents)
            if votes(artifact, report.links):
                job.started, job.report = started, report

        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(one(rb, job) for rb, job in work))
        except TimeoutError:
            pass
        except Exception as e:  # noqa: BLE001 - a bug here only costs the shortcut
            log.debug("rebuildgate: reading the cache for %s: %r", artifact.label, e)
        self.last_progress = time.monotonic()
        return [(rb, job) for rb, job in work if job.report is None]

    async def _run_job(self, rebuilder: Rebuilder, artifact: Artifact, job: _Job) -> None:
        """One job, never raising: whatever goes wrong costs this rebuilder's vote."""
        try:
            async with self._share(rebuilder.name), self.transport.slots():
                job.started = self.last_progress = time.monotonic()
                deadline = job.started + self.policy.fetch.deadline
                try:
                    async with asyncio.timeout_at(deadline + 0.2):  # the fetcher's own deadline comes first
                        job.report = await self._report(rebuilder, artifact, deadline)
                except TimeoutError:
                    job.report = _timed_out(rebuilder.name, self.policy.fetch.deadline)
        except Exception as e:  # noqa: BLE001 - a bug costs the vote, never opens the gate
            job.report = RebuilderReport(rebuilder.name, (), (Problem("internal-error", repr(e)[:300]),))
        finally:
            self.last_progress = time.monotonic()

    def _share(self, rebuilder: str) -> asyncio.Semaphore:
        """At most half of the ``max_workers`` job slots for one rebuilder (on the loop).

        Jobs take their slots in submission order, and a rebuilder that
        holds each request until just before the deadline would otherwise
        collect every slot: the other rebuilders' work, done in
        milliseconds, would wait with it until its budget runs out.  Waiting
        here, before a slot is taken, the others go on meanwhile.  With a
        single rebuilder there is nobody to share with.
        """
        share = self._shares.get(rebuilder)
        if share is None:
            workers = max(self.policy.fetch.max_workers, 1)
            size = workers if len(self.sources) < 2 else max(1, (workers + 1) // 2)
            share = self._shares[rebuilder] = asyncio.Semaphore(size)
        return share

    async def _report(self, rebuilder: Rebuilder, artifact: Artifact, deadline: float) -> RebuilderReport:
        """Fetch and check one rebuilder's evidence for one artifact.

        The cache may save requests, never change a verdict: when documents
        read from the on-disk cache give no vote (garbage, a foreign or an
        outdated attestation, a key that changed), the rebuilder is asked
        again, once, and its fresh answer decides.
        """
        source = self.sources[rebuilder.name]
        refusal = self.transport.budgets.refusal(source.check_account)
        if refusal is not None:  # its documents overdrew its CPU budget: not asked again
            return RebuilderReport(rebuilder.name, (), (Problem(refusal.kind, str(refusal)),))
        report, documents = await self._fetch_and_check(rebuilder, source, artifact, deadline, fresh=False)
        if any(doc.cached for doc in documents) and not votes(artifact, report.links):
            report, _ = await self._fetch_and_check(rebuilder, source, artifact, deadline, fresh=True)
        return report

    async def _fetch_and_check(self, rebuilder: Rebuilder, source: EvidenceSource, artifact: Artifact,
                               deadline: float, fresh: bool) -> tuple[RebuilderReport, list[Document]]:
        try:
            documents = await source.fetch_documents(artifact, deadline, fresh)
        except EvidenceMissing as e:
            return RebuilderReport(rebuilder.name, (), (Problem("missing", str(e)),)), []
        except FetchError as e:
            return RebuilderReport(rebuilder.name, (), (Problem(e.kind, str(e)),)), []
        return await self._check_documents(rebuilder, source, documents), documents

    async def _check_documents(self, rebuilder: Rebuilder, source: EvidenceSource,
                               documents: list[Document]) -> RebuilderReport:
        # Signature checks release the GIL: on checker threads they run on
        # another core while this loop goes on reading answers.  Each
        # rebuilder's checks queue apart, served in turn, so one rebuilder's
        # costly documents never hold up another's (see _hand_checks).
        outcomes = await self._queue_checks(rebuilder.name, source, documents)
        links = tuple(outcome for outcome, _cpu in outcomes if isinstance(outcome, SignedLink))
        problems = tuple(outcome for outcome, _cpu in outcomes if not isinstance(outcome, SignedLink))
        return RebuilderReport(rebuilder.name, links, problems)

    def _queue_checks(self, rebuilder: str, source: EvidenceSource,
                      documents: list[Document]) -> "asyncio.Future[list[tuple[Any, float | None]]]":
        """A future for the outcomes of checking one job's *documents* (on the loop).

        The checks that jobs ask for in one turn of the loop go to the
        checkers together (:meth:`_hand_checks`), not one task each: every
        task was a worker woken and the loop woken with its answer.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[tuple[Any, float | None]]] = loop.create_future()
        if not self._to_check:
            loop.call_soon(self._hand_checks)
        self._to_check.setdefault(rebuilder, []).append((source, documents, fut))
        return fut

    def _hand_checks(self) -> None:
        """Give the queued checks to the checkers, in tasks of one rebuilder each (on the loop).

        A task holds the documents of several jobs, at most CHECK_BATCH of
        them and CHECK_BATCH_BYTES together (a job's documents are never
        split, and a job alone may exceed that), so a batch of one
        rebuilder's documents is never much longer than one costly document.
        The FairPool still serves each rebuilder in turn, and a task stops
        after the first job whose documents cost more than COSTLY_CPU
        without a vote: its cost is charged here before any more of that
        rebuilder's documents are checked (:meth:`_checks_done`).
        """
        queued, self._to_check = self._to_check, {}
        for rebuilder, items in queued.items():
            items = [item for item in items if not item[2].done()]  # their jobs have ended
            while items:
                count = size = 0
                take = 0
                for _source, documents, _fut in items:
                    count += len(documents)
                    size += sum(len(doc.body) for doc in documents)
                    if take and (count > CHECK_BATCH or size > CHECK_BATCH_BYTES):
                        break
                    take += 1
                batch, items = items[:take], items[take:]
                self._start_checks(rebuilder, batch)

    def _start_checks(self, rebuilder: str, batch: list) -> None:
        work = self._checkers.submit(rebuilder, self._check_batch, [(source, docs) for source, docs, _ in batch])
        self.transport.on_loop(work).add_done_callback(lambda done: self._checks_done(rebuilder, batch, done))
        waiting = [len(batch)]

        def ended(_fut: asyncio.Future) -> None:  # a task whose jobs all ended before it started is dropped
            waiting[0] -= 1
            if not waiting[0]:
                work.cancel()

        for _source, _docs, fut in batch:
            fut.add_done_callback(ended)

    def _check_batch(self, jobs: list[tuple[EvidenceSource, list[Document]]]) -> list[Any]:
        """Check the documents of *jobs* in order (on a checker thread): per job
        its outcomes (or the exception its check raised, which costs only
        that job its vote).  Stops after a job whose documents cost more than
        COSTLY_CPU and gave no vote, so its cost is charged first."""
        results: list[Any] = []
        for source, documents in jobs:
            try:
                outcomes = [self._check(source, doc.url, doc.body) for doc in documents]
            except Exception as e:  # noqa: BLE001 - handed to that job: a bug costs its vote
                results.append(e)
                continue
            results.append(outcomes)
            if any(cpu is not None and cpu >= budget.COSTLY_CPU and not isinstance(outcome, SignedLink)
                   for outcome, cpu in outcomes):
                break
        return results

    def _checks_done(self, rebuilder: str, batch: list, done: asyncio.Future) -> None:
        """Charge what the checks cost, give each job its outcomes and queue
        again the jobs a stopped task did not reach (on the loop)."""
        if done.cancelled() or done.exception() is not None:
            error = None if done.cancelled() else done.exception()
            for _source, _docs, fut in batch:
                if fut.done():
                    continue
                if error is None:
                    fut.cancel()
                else:
                    fut.set_exception(error)
            return
        results = done.result()
        for (source, _docs, fut), outcomes in zip(batch, results):
            if isinstance(outcomes, Exception):
                if not fut.done():
                    fut.set_exception(outcomes)
                continue
            for outcome, cpu in outcomes:
                if cpu is not None and not isinstance(outcome, SignedLink):
                    self.transport.charge_check(source.check_account, cpu)
            if not fut.done():
                fut.set_result(outcomes)
        rest = [item for item in batch[len(results):] if not item[2].done()]
        if rest:
            if not self._to_check:
                asyncio.get_running_loop().call_soon(self._hand_checks)
            self._to_check.setdefault(rebuilder, [])[:0] = rest  # ahead of what was queued since

    def _check(self, source: EvidenceSource, url: str, body: bytes) -> tuple[SignedLink | Problem, float | None]:
        """verify_document, once per (rebuilder, URL, body): the binaries of one
        source package share one merged link, so it is checked once.  Only
        the outcome is kept (never the body or an exception holding it),
        with the CPU seconds the check cost (None when it was not checked now).
        A rebuilder that has overdrawn its CPU budget is not checked at all.
        Runs on the checker threads."""
        rebuilder = source.rebuilder.name
        key = (rebuilder, url, hashlib.sha256(body).digest())
        outcome = self._checked.get(key)
        if outcome is not None:
            return outcome, None
        refusal = self.transport.budgets.check_refusal(source.check_account)
        if refusal is not None:
            return Problem(refusal.kind, str(refusal)), None
        started = time.thread_time()
        try:
            outcome = verify_document(body, self.keysets[rebuilder], url, source.rebuilder.predicate_types)
        except EvidenceError as e:
            outcome = Problem(e.kind, f"{e} ({url})")
        cpu = time.thread_time() - started
        if len(self._checked) > 65536:  # bounded
            self._checked.clear()
        self._checked[key] = outcome
        return outcome, cpu

    def _finish(self, verdict: Verdict) -> Verdict:
        """Record the verdict; relaxations are always logged (stderr and file).

        A verdict whose decision log line could not be written says so
        (``unlogged``): front ends show it, since an admin relies on that log.
        """
        if verdict.relaxed_by:
            log.warning("rebuildgate: %s", verdict.summary())
        lost = self._write_log(verdict)
        return replace(verdict, unlogged=lost) if lost else verdict

    @property
    def lost_log_lines(self) -> int:
        return self._log.lost

    def open_decision_log(self) -> str | None:
        """Open the decision log now (it is kept open); return why not, if it failed.

        Front ends that drop privileges call this first, while they can
        still open a root-owned log; otherwise it is opened on first use.
        """
        with self._log_lock:
            return self._open_log_locked()

    def _open_log_locked(self) -> str | None:
        if not self._log_opened and not self._closed:
            self._log_opened = True
            self._log_error = self._log.open()
            return self._log_error
        return None

    def _write_log(self, verdict: Verdict) -> str | None:
        """Append the verdict's line; why it was lost, if it was."""
        expected = bool(self.policy.log) or os.geteuid() == 0  # a user's `apt-get -s` has no log to lose
        with self._log_lock:
            error = self._open_log_locked()
            if error and expected:
                log.warning("rebuildgate: %s", error)  # once: the open is tried once
            if self._closed:
                return None  # concluded after close(): not this process's log any more
        if self._log_error:
            return self._log_error if expected else None
        lost = self._log.append(verdict.to_json())
        if lost:
            log.warning("rebuildgate: %s", lost)
        return lost


def append_log(policy: Policy, entry: dict) -> str | None:
    """Append one JSON line to the decision log; return why it failed, if it did."""
    decisions = DecisionLog(policy.log or DEFAULT_LOG)
    error = decisions.open()
    if error:
        return error
    try:
        return decisions.append(entry)
    finally:
        decisions.close()


