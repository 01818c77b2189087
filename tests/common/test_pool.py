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


def test_fair_pool_serves_keys_in_turn() -> None:
    """One worker, a long queue of one key's work: another key's task runs
    after at most one more of the first key's, not after all of them."""
    from rebuildgate.pool import FairPool

    pool = FairPool(1, "turns")
    gate = threading.Event()
    order: list[str] = []
    try:
        first = pool.submit("hostile", gate.wait, 10)
        futures = [pool.submit("hostile", order.append, f"hostile-{i}") for i in range(5)]
        futures.append(pool.submit("honest", order.append, "honest"))
        gate.set()
        assert first.result(10)
        for f in futures:
            f.result(10)
        assert order.index("honest") == 1, order
    finally:
        gate.set()
        pool.shutdown()


def test_fair_pool_keeps_a_worker_for_other_keys() -> None:
    """With two workers, one key never holds both: while every one of its
    tasks is stuck, another key's task still runs at once."""
    from rebuildgate.pool import FairPool

    pool = FairPool(2, "share")
    gate = threading.Event()
    try:
        stuck = [pool.submit("hostile", gate.wait, 30) for _ in range(4)]
        assert pool.submit("honest", lambda: "checked").result(10) == "checked"
        assert not any(f.done() for f in stuck)
        gate.set()
        assert all(f.result(10) for f in stuck)
    finally:
        gate.set()
        pool.shutdown()


def test_fair_pool_shutdown_cancels_what_has_not_started() -> None:
    from rebuildgate.pool import FairPool

    pool = FairPool(1, "closing")
    gate, started = threading.Event(), threading.Event()
    try:
        running = pool.submit("a", lambda: started.set() or gate.wait(10))
        queued = pool.submit("b", lambda: "never")
        assert started.wait(10)
        pool.shutdown()
        assert queued.cancelled()
        assert pool.submit("c", lambda: "late").cancelled()
    finally:
        gate.set()
    assert running.result(10)
