"""The daemon worker pool the fetcher uses for blocking calls."""

from __future__ import annotations

import threading
import time

from rebuildgate.pool import DaemonPool


def test_a_stuck_call_does_not_hold_up_the_next() -> None:
    """A name lookup that never returns must not delay another host's lookup
    (that would time out, and trip, every healthy rebuilder of the run)."""
    pool = DaemonPool(4, "t")
    release = threading.Event()
    try:
        warm = pool.submit(lambda: "warm")  # one idle worker exists from here on
        assert warm.result(2) == "warm"
        time.sleep(0.05)
        stuck = pool.submit(release.wait, 30)
        quick = pool.submit(lambda: "quick")
        assert quick.result(2) == "quick"
        assert not stuck.done()
    finally:
        release.set()
        pool.shutdown()


def test_workers_are_bounded_and_daemons() -> None:
    pool = DaemonPool(2, "bounded")
    release = threading.Event()
    try:
        futures = [pool.submit(release.wait, 5) for _ in range(5)]
        time.sleep(0.1)
        names = [t for t in threading.enumerate() if t.name.startswith("bounded-")]
        assert len(names) == 2 and all(t.daemon for t in names)
        release.set()
        assert all(f.result(5) for f in futures)
    finally:
        release.set()
        pool.shutdown()
