"""A thread pool whose workers never keep the process alive.

concurrent.futures joins its workers at interpreter exit (and asyncio's
default executor is one of those), so one call stuck in a system call (a
resolver that never answers, a read on a hung network file system) would
keep apt, dnf or the CLI from exiting after the verdicts were given.  These
workers are daemon threads; work is handed out in submission order.  The
fetcher uses it for the blocking calls it cannot make on its event loop:
name resolution and reading local evidence files.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable


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
