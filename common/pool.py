"""Thread pools whose workers never keep the process alive.

concurrent.futures joins its workers at interpreter exit (and asyncio's
default executor is one of those), so one call stuck in a system call (a
resolver that never answers, a read on a hung network file system) would
keep apt, dnf or the CLI from exiting after the verdicts were given.  These
workers are daemon threads; work is handed out in submission order.  The
fetcher uses it for the blocking calls it cannot make on its event loop:
name resolution and reading local evidence files.  The verifier checks
signatures on a :class:`FairPool`, which serves each rebuilder in turn.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Hashable


class DaemonPool:
    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future, Callable, tuple] | None] = queue.SimpleQueue()
        self._workers = workers
        self._name = name
        self._started = 0
        self._idle = 0  # workers waiting for work
        self._waiting = 0  # work nobody has taken yet
        self._lock = threading.Lock()

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Queue *fn*; a new worker starts whenever the work waiting outnumbers
        the idle workers, so one call stuck in a system call never holds up
        the others (up to the pool's size)."""
        fut: Future = Future()
        with self._lock:
            self._waiting += 1
            start = self._waiting > self._idle and self._started < self._workers
            if start:
                self._started += 1
                number = self._started
        self._queue.put((fut, fn, args))
        if start:
            threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True).start()
        return fut

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._waiting -= 1
            if item is None:
                return
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


class FairPool:
    """Daemon workers that serve one queue per key in turn.

    Signature checks are CPU work, and one hostile rebuilder can hand over
    any amount of it (documents of ``max_bytes`` full of bogus signatures,
    for every package).  In one shared queue its work would sit in front of
    every honest rebuilder's.  Here each key (a rebuilder) has its own
    queue; free workers take from the keys round-robin, and one key never
    has more than ``per_key`` tasks running (by default all workers but
    one), so with two or more workers there is always one free for another
    key's work.
    """

    def __init__(self, workers: int, name: str, per_key: int | None = None) -> None:
        self._workers = max(1, workers)
        self._per_key = per_key or max(1, self._workers - 1)
        self._name = name
        self._cond = threading.Condition()
        self._queues: dict[Hashable, deque[tuple[Future, Callable, tuple]]] = {}  # in turn order
        self._running: dict[Hashable, int] = {}
        self._pending = 0
        self._idle = 0
        self._started = 0
        self._closed = False

    def submit(self, key: Hashable, fn: Callable, *args: Any) -> Future:
        """Queue *fn* as work of *key*; a Future for its result."""
        fut: Future = Future()
        with self._cond:
            if self._closed:
                fut.cancel()
                return fut
            self._queues.setdefault(key, deque()).append((fut, fn, args))
            self._pending += 1
            start = self._pending > self._idle and self._started < self._workers
            if start:
                self._started += 1
                number = self._started
            self._cond.notify()
        if start:
            threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True).start()
        return fut

    def _take(self) -> tuple[Hashable, tuple[Future, Callable, tuple]] | None:
        """The next task in turn whose key is below its limit (lock held)."""
        for key in self._queues:
            if self._running.get(key, 0) >= self._per_key:
                continue
            tasks = self._queues.pop(key)
            item = tasks.popleft()
            if tasks:
                self._queues[key] = tasks  # to the back of the turn
            self._running[key] = self._running.get(key, 0) + 1
            self._pending -= 1
            return key, item
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    taken = self._take()
                    if taken is not None:
                        break
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
            key, (fut, fn, args) = taken
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args))
                    except BaseException as e:  # noqa: BLE001 - handed to whoever waits
                        fut.set_exception(e)
            finally:
                with self._cond:
                    self._running[key] -= 1
                    if not self._running[key]:
                        del self._running[key]
                    self._cond.notify()  # that key may be below its limit again

    def shutdown(self) -> None:
        """Cancel what has not started; workers end when they are free."""
        with self._cond:
            self._closed = True
            queues, self._queues = self._queues, {}
            self._pending = 0
            self._cond.notify_all()
        for tasks in queues.values():
            for fut, _fn, _args in tasks:
                fut.cancel()
