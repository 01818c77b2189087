"""A deadline for a hook's work: apt waits for its hooks without a timeout.

Both hooks run their check on a thread and give up at a deadline the check
may push back once it knows its own bound (the rebuilders' fetch deadline
for each round of lookups).  What to do at the deadline is the hook's
choice: the pre-install hook stops apt, the pre-prompt hook leaves the
verdict to the method.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class Watchdog:
    """Runs the check on a thread and gives up at a deadline the check may push back."""

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        self._lock = threading.Lock()

    def extend(self, seconds: float) -> None:
        """Allow at least *seconds* more from now (the verification's own bound)."""
        with self._lock:
            self._deadline = max(self._deadline, time.monotonic() + seconds)

    def run(self, work: Callable[[], T]) -> T:
        """*work*'s result; TimeoutError if it is not done by the deadline (it is abandoned)."""
        box: list = []
        done = threading.Event()

        def target() -> None:
            try:
                box.append((True, work()))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box.append((False, e))
            done.set()

        threading.Thread(target=target, name="rbg-preinstall", daemon=True).start()
        while not done.wait(min(max(self._remaining(), 0.0), 1.0)):
            if self._remaining() <= 0:
                raise TimeoutError
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _remaining(self) -> float:
        with self._lock:
            return self._deadline - time.monotonic()
