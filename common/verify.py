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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence

from .decide import Rule, Verdict, decide, failed
from .errors import EvidenceError, EvidenceMissing, FetchError
from .evidence import KeySet, load_keyset, verify_document
from .fetch import EvidenceSource, make_transport
from .model import Artifact, Problem, RebuilderReport, SignedLink
from .policy import Policy, Rebuilder

log = logging.getLogger("rebuildgate")

DEFAULT_LOG = Path("/var/log/rebuildgate/decisions.log")


class _Clock:
    """When an artifact's deadline starts: when its first fetch starts running.

    A large transaction queues thousands of fetches behind a bounded pool;
    counting the deadline from submission would time out packages whose
    rebuilders are fine but whose turn simply had not come.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: float | None = None
        self._lock = threading.Lock()

    def start(self) -> float:
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
            return self.started + self.seconds


class PendingVerdict:
    """A verdict being computed; :meth:`result` waits for it (bounded)."""

    #: Grace after the deadline for a fetch to notice it and return.
    GRACE = 1.0
    #: The longest :meth:`result` waits for fetches that have not even started.
    QUEUE_LIMIT = 600.0

    def __init__(self, verifier: "Verifier", artifact: Artifact, rule: Rule,
                 jobs: list[tuple[str, Future[RebuilderReport]]], clock: _Clock) -> None:
        self._verifier = verifier
        self.artifact = artifact
        self._rule = rule
        self._jobs = jobs
        self._clock = clock
        self._submitted = time.monotonic()
        self._verdict: Verdict | None = None
        self._lock = threading.Lock()

    def done(self) -> bool:
        return self._verdict is not None or all(f.done() for _, f in self._jobs)

    def _wait(self) -> None:
        futures = [f for _, f in self._jobs]
        while True:
            now = time.monotonic()
            if self._clock.started is None:  # still queued behind other packages
                limit = self._submitted + self.QUEUE_LIMIT
            else:
                limit = self._clock.started + self._clock.seconds + self.GRACE
            if now >= limit:
                return
            _, pending = wait(futures, timeout=min(limit - now, 1.0) if self._clock.started is None else limit - now)
            if not pending:
                return

    def result(self) -> Verdict:
        with self._lock:
            if self._verdict is None:
                self._wait()
                reports = []
                for name, fut in self._jobs:
                    if not fut.done():
                        fut.cancel()
                        reports.append(RebuilderReport(name, (), (Problem(
                            "timeout", f"no answer within the deadline of {self._clock.seconds:g}s"),)))
                        continue
                    try:
                        reports.append(fut.result())
                    except BaseException as e:  # noqa: BLE001 - a bug costs the vote, never opens the gate
                        reports.append(RebuilderReport(name, (), (Problem("internal-error", repr(e)),)))
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
        self.pool = ThreadPoolExecutor(max_workers=policy.fetch.max_workers, thread_name_prefix="rbg-fetch")
        self._today = today
        if halts is None and policy.halt is not None:
            from .halt import HaltWatch

            halts = HaltWatch(policy.halt, self.transport, policy.path)
        self._halts = halts
        self._log_warned = False
        self._log_file: Any = None
        self._checked: dict[tuple[str, str, bytes], SignedLink | EvidenceError] = {}
        self._log_lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.transport.close()
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rule(self, artifact: Artifact) -> tuple[Rule, tuple[Rebuilder, ...], Problem | None]:
        """The policy's rule for *artifact*, with the halts in force for it."""
        resolution = self.policy.resolve(artifact, self._today())
        rule = resolution.rule
        if self._halts is None:
            return rule, resolution.rebuilders, None
        try:
            return Rule(**{**rule.__dict__, "halts": tuple(self._halts(artifact))}), resolution.rebuilders, None
        except Exception as e:  # noqa: BLE001 - halts unreadable: fail closed
            return rule, resolution.rebuilders, Problem("halt-error", str(e))

    def submit(self, artifact: Artifact) -> PendingVerdict:
        """Start verifying *artifact* in the background."""
        clock = _Clock(self.policy.fetch.deadline)
        rule, rebuilders, problem = self._rule(artifact)
        if problem is not None:
            pending = PendingVerdict(self, artifact, rule, [], clock)
            pending._verdict = self._finish(failed(artifact, rule, problem))
            return pending
        jobs = [(rb.name, self.pool.submit(self._report, rb, artifact, clock)) for rb in rebuilders]
        return PendingVerdict(self, artifact, rule, jobs, clock)

    def refuse(self, artifact: Artifact, problem: Problem) -> Verdict:
        """The verdict for an artifact that cannot be verified at all.

        For front ends that find a package unverifiable before asking any
        rebuilder (a repository that only gives an md5): the policy still
        decides (an ungated repository, audit mode or the allowlist may let
        it through, logged), halts still apply, and the verdict is logged
        like any other.
        """
        rule, _, halt_problem = self._rule(artifact)
        return self._finish(failed(artifact, rule, halt_problem or problem))

    def verify_many(self, artifacts: Sequence[Artifact]) -> list[Verdict]:
        """Verify a whole transaction; the order of verdicts is the order given."""
        pending = [self.submit(a) for a in artifacts]
        return [p.result() for p in pending]

    def _report(self, rebuilder: Rebuilder, artifact: Artifact, clock: _Clock) -> RebuilderReport:
        """Fetch and check one rebuilder's evidence for one artifact."""
        deadline = clock.start()
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
                problems.append(Problem(outcome.kind, f"{outcome} ({doc.url})"))
        return RebuilderReport(rebuilder.name, tuple(links), tuple(problems))

    def _check(self, rebuilder: str, url: str, body: bytes) -> SignedLink | EvidenceError:
        """verify_document, once per (rebuilder, URL, body): the binaries of one
        source package share one merged link, so it is checked once."""
        key = (rebuilder, url, hashlib.sha256(body).digest())
        outcome = self._checked.get(key)
        if outcome is None:
            try:
                outcome = verify_document(body, self.keysets[rebuilder], url)
            except EvidenceError as e:
                outcome = e
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
