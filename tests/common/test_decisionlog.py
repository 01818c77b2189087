"""The decision log: every line whole, whatever the disk or the other writers do."""

from __future__ import annotations

import json
import multiprocessing
import os

from rebuildgate import decisionlog
from rebuildgate.decisionlog import DecisionLog
from tests.support.disk import full_directory


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_full_disk_loses_the_line_not_the_file(tmp_path) -> None:
    with full_directory(tmp_path / "disk", size_kib=16) as disk:
        (disk / ".filler").unlink()  # room for a few lines
        (disk / ".filler").write_bytes(b"\0" * (16 * 1024 - 4096 - 300))
        log = DecisionLog(disk / "decisions.log")
        assert log.open() is None
        errors = [log.append({"n": i, "pad": "x" * 400}) for i in range(40)]
        assert errors[0] is None and any(errors)
        assert "No space left on device" in next(e for e in errors if e) or "short write" in next(e for e in errors if e)
        assert log.lost == sum(1 for e in errors if e)
        written = lines(disk / "decisions.log")  # every line parses: nothing half-written was left
        assert [w["n"] for w in written] == [i for i, e in enumerate(errors) if e is None]
        (disk / ".filler").unlink()  # space again: the next line starts on a line of its own
        assert log.append({"n": "after"}) is None
        assert lines(disk / "decisions.log")[-1]["n"] == "after"
        log.close()


def test_a_short_write_is_cut_back(tmp_path, monkeypatch) -> None:
    log = DecisionLog(tmp_path / "decisions.log")
    log.open()
    assert log.append({"n": 1}) is None
    real = os.write
    monkeypatch.setattr(decisionlog.os, "write", lambda fd, data: real(fd, data[: len(data) // 2]))
    assert "short write" in log.append({"n": 2, "pad": "y" * 100})
    monkeypatch.setattr(decisionlog.os, "write", real)
    assert log.append({"n": 3}) is None
    assert [x["n"] for x in lines(tmp_path / "decisions.log")] == [1, 3] and log.lost == 1


def _writer(path: str, who: int) -> None:
    log = DecisionLog(__import__("pathlib").Path(path))
    log.open()
    for i in range(300):
        assert log.append({"who": who, "i": i, "pad": "z" * (37 * who)}) is None
    log.close()


def test_concurrent_writers_never_interleave(tmp_path) -> None:
    path = tmp_path / "decisions.log"
    procs = [multiprocessing.Process(target=_writer, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    written = lines(path)
    assert len(written) == 1200
    for w in range(4):
        assert [x["i"] for x in written if x["who"] == w] == list(range(300))


def test_an_unopened_log_reports_every_loss(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    log = DecisionLog(tmp_path / "file" / "decisions.log")
    assert "cannot write decision log" in log.open()
    assert "is not open" in log.append({"n": 1}) and log.lost == 1


def test_a_lock_held_elsewhere_drops_the_line_instead_of_waiting(tmp_path, monkeypatch) -> None:
    """Anyone who can open the log can hold its flock: a verdict never waits more than LOCK_WAIT on it."""
    import fcntl
    import time

    monkeypatch.setattr(decisionlog, "LOCK_WAIT", 0.3)
    path = tmp_path / "decisions.log"
    log = DecisionLog(path)
    log.open()
    holder = os.open(path, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        assert "locked by another process" in log.append({"n": 1})
        assert 0.25 < time.monotonic() - started < 2
        started = time.monotonic()
        assert "locked by another process" in log.append({"n": 2})
        assert time.monotonic() - started < 0.2  # after one wait ran out, no more waiting
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    assert log.append({"n": 3}) is None and log.lost == 2
    assert [x["n"] for x in lines(path)] == [3]
