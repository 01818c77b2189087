"""Waiting for something a test started in the background, bounded.

A test that waits for a condition must fail, not hang, when the condition
never comes; the bound is generous (the machine may be busy), since only
its absence is an error.
"""

from __future__ import annotations

import time
from typing import Callable


def wait_until(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    """Poll *condition* every 10 ms for at most *limit* seconds; whether it came."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True
