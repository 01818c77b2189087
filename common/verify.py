"""Verification of whole transactions: the API the front ends call.

:class:`Verifier` loads the policy's keys once, then verifies artifacts in
parallel across packages and rebuilders.  apt calls :meth:`Verifier.submit`
as soon as it queues a download, so evidence is fetched while the package
downloads; dnf and the CLI call :meth:`Verifier.verify_many` for a whole
transaction.  Nothing here raises for a per-package problem: each becomes
part of a blocking :class:`~rebuildgate.decide.Verdict` (fail closed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import threading
import time
import queue
from concurrent.futures import ALL_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .decide import HaltNotice, Rule, Verdict, decide, failed
from .errors import EvidenceError, EvidenceMissing, FetchError
from .evidence import KeySet, load_keyset, verify_document
from .fetch import EvidenceSource, make_transport
from .model import Artifact, Problem, RebuilderReport, SignedLink
from .policy import Policy, Rebuilder

log = logging.getLogger("rebuildgate")

DEFAULT_LOG = Path("/var/log/rebuildgate/decisions.log")


class _Pool:
    """A thread pool whose workers never keep the process alive.

    concurrent.futures joins its workers at interpreter exit, so one fetch
    stuck in a system call (a resolver that never answers) would keep apt,
    dnf or the CLI from exiting after the verdicts were given.  These
    workers are daemon threads; work is handed out in submission order.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future, Callable, tuple] | None] = queue.SimpleQueue()
        self._workers = workers
        self._name = name
        self._started = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable, *args: Any) -> Future:
        fut: Future = Future()
        self._queue.put((fut, fn, args))
        with self._lock:
            if self._started < self._workers:
                self._started += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()
        return fut

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits
                fut.set_exception(e)

    def shutdown(self) -> None:
        """Cancel what has not started; workers end when they are free."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(self._started):
            self._queue.put(None)


@dataclass
class _Job:
    """One rebuilder's part of one artifact; its deadline starts when it runs.

    Counting from submission would time out packages of a large transaction
    whose rebuilders are fine but whose turn had not come.
    """

    rebuilder: str
    future: Future = field(default_factory=Future)
    started: float | None = None


class PendingVerdict:
    """A verdict being computed; :meth:`result` waits for it (bounded)."""

    #: Grace after a job's deadline for it to notice and return.
    GRACE = 1.0
    #: The longest :meth:`result` waits for jobs that have not even started.
    QUEUE_LIMIT = 600.0

    def __init__(self, verifier: "Verifier", artifact: Artifact, rule: Rule, jobs: list[_Job]) -> None:
        self._verifier = verifier
        self.artifact = artifact
        self._rule = rule
        self._jobs = jobs
        self._submitted = time.monotonic()
        self._verdict: Verdict | None = None
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._verdict is not None or all(j.future.done() for j in self._jobs)

    def _limit(self, job: _Job) -> float:
        if job.started is None:
            return self._submitted + self.QUEUE_LIMIT
        return job.started + self._verifier.policy.fetch.deadline + self.GRACE

    def _wait(self) -> None:
        """Until every job is done or past its own limit; no busy loop."""
        while True:
            now = time.monotonic()
            waiting = [j for j in self._jobs if not j.future.done() and now < self._limit(j)]
            if not waiting:
                return
            # One wake-up when all are done, not one per rebuilder; re-check
            # the limits at the first one due, and every second for queued jobs.
            timeout = min(min(self._limit(j) for j in waiting) - now, 1.0)
            wait([j.future for j in waiting], timeout=timeout, return_when=ALL_COMPLETED)

    def result(self) -> Verdict:
        with self._lock:
            if self._verdict is None:
                self._wait()
                reports = []
                for job in self._jobs:
                    if not job.future.done():
                        job.future.cancel()
                        reports.append(RebuilderReport(job.rebuilder, (), (Problem(
                            "timeout", f"no answer within the deadline of {self._verifier.policy.fetch.deadline:g}s"),)))
                        continue
                    try:
                        reports.append(job.future.result())
                    except BaseException as e:  # noqa: BLE001 - a bug costs the vote, never opens the gate
                        reports.append(RebuilderReport(job.rebuilder, (), (Problem("internal-error", repr(e)),)))
                self._verdict = self._verifier._finish(decide(self.artifact, self._rule, reports))
            return self._verdict


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
        self.pool = _Pool(policy.fetch.max_workers, "rbg-fetch")
        self._today = today
        if halts is None and policy.halt is not None:
            from .halt import HaltWatch

            halts = HaltWatch(policy.halt, self.transport, policy.path)
        self._halts = halts
        self._log_warned = False
        self._log_file: Any = None
        self._checked: dict[tuple[str, str, bytes], SignedLink | Problem] = {}
        self._log_lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown()
        self.transport.close()
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            halts = (HaltNotice("halt-error", f"halts could not be evaluated: {e}", ("rebuildgate",)),)
        return Rule(**{**rule.__dict__, "halts": halts}), resolution.rebuilders

    def submit(self, artifact: Artifact) -> PendingVerdict:
        """Start verifying *artifact* in the background."""
        rule, rebuilders = self._rule(artifact)
        jobs = []
        for rb in rebuilders:
            job = _Job(rb.name)
            job.future = self.pool.submit(self._report, rb, artifact, job)
            jobs.append(job)
        return PendingVerdict(self, artifact, rule, jobs)

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
        """Verify a whole transaction; the order of verdicts is the order given."""
        pending = [self.submit(a) for a in artifacts]
        return [p.result() for p in pending]

    def _report(self, rebuilder: Rebuilder, artifact: Artifact, job: _Job) -> RebuilderReport:
        """Fetch and check one rebuilder's evidence for one artifact."""
        job.started = time.monotonic()
        deadline = job.started + self.policy.fetch.deadline
        try:
            documents = self.sources[rebuilder.name].documents(artifact, deadline)
        except EvidenceMissing as e:
            return RebuilderReport(rebuilder.name, (), (Problem("missing", str(e)),))
        except FetchError as e:
            return RebuilderReport(rebuilder.name, (), (Problem(e.kind, str(e)),))
        links: list[SignedLink] = []
        problems: list[Problem] = []
        for doc in documents:
            outcome = self._check(rebuilder.name, doc.url, doc.body)
            if isinstance(outcome, SignedLink):
                links.append(outcome)
            else:
                problems.append(outcome)
        return RebuilderReport(rebuilder.name, tuple(links), tuple(problems))

    def _check(self, rebuilder: str, url: str, body: bytes) -> SignedLink | Problem:
        """verify_document, once per (rebuilder, URL, body): the binaries of one
        source package share one merged link, so it is checked once.  Only
        the outcome is kept (never the body or an exception holding it)."""
        key = (rebuilder, url, hashlib.sha256(body).digest())
        outcome = self._checked.get(key)
        if outcome is None:
            try:
                outcome = verify_document(body, self.keysets[rebuilder], url)
            except EvidenceError as e:
                outcome = Problem(e.kind, f"{e} ({url})")
            if len(self._checked) > 65536:  # bounded; dict updates are atomic under the GIL
                self._checked.clear()
            self._checked[key] = outcome
        return outcome

    def _finish(self, verdict: Verdict) -> Verdict:
        """Record the verdict; relaxations are always logged (stderr and file)."""
        if verdict.relaxed_by and not verdict.accepted:
            log.warning("rebuildgate: %s", verdict.summary())
        self._write_log(verdict)
        return verdict

    def open_decision_log(self) -> str | None:
        """Open the decision log now (it is kept open); return why not, if it failed.

        Front ends that drop privileges call this first, while they can
        still open a root-owned log; otherwise it is opened on first use.
        """
        with self._log_lock:
            return self._open_log_locked()

    def _open_log_locked(self) -> str | None:
        if self._log_file is None and not self._log_warned:
            self._log_file, error = open_log(self.policy)
            if error:
                self._log_warned = True
                return error
        return None

    def _write_log(self, verdict: Verdict) -> None:
        with self._log_lock:
            error = self._open_log_locked()
            if error and (self.policy.log or os.geteuid() == 0):
                log.warning("rebuildgate: %s", error)
            if self._log_file is not None:
                try:
                    self._log_file.write(log_line(verdict.to_json()))
                    self._log_file.flush()
                except OSError as e:
                    log.warning("rebuildgate: cannot write decision log: %s", e.strerror or e)
                    self._log_file = None
                    self._log_warned = True


def open_log(policy: Policy) -> tuple[Any, str | None]:
    """The decision log, opened for appending (once per process), or why not."""
    path = policy.log or DEFAULT_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8"), None
    except OSError as e:
        return None, f"cannot write decision log {path}: {e.strerror or e}"


def log_line(entry: dict) -> str:
    line = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **entry}
    return json.dumps(line, sort_keys=True) + "\n"


def append_log(policy: Policy, entry: dict) -> str | None:
    """Append one JSON line to the decision log; return why it failed, if it did."""
    f, error = open_log(policy)
    if f is None:
        return error
    with f:
        f.write(log_line(entry))
    return None
