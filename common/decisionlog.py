"""The decision log: one JSON line per verdict, every line whole.

Several processes append to one file (an apt method, dnf, the CLI, at the
same time), the disk may fill up, and whoever reads the log later must be
able to trust every line.  So a line is written with a single ``os.write``
on an ``O_APPEND`` descriptor, under an exclusive ``flock`` shared by every
rebuildgate process; a short or failed write is cut back to where that
write began, so no half line is ever left for the next one to be glued to,
and the caller learns that the line was lost (front ends show it).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

#: The longest a line waits for another process's lock on the log.
LOCK_WAIT = 2.0


class DecisionLog:
    """An append-only JSON-lines file, opened once (before privileges are dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.lost = 0  # lines that could not be written
        self._lock_timed_out = False

    def open(self) -> str | None:
        """Open the file for appending; return why not, if it failed."""
        with self._lock:
            if self._fd is not None:
                return None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            except OSError as e:
                return f"cannot write decision log {self.path}: {e.strerror or e}"
            return None

    def append(self, entry: dict[str, Any]) -> str | None:
        """Write one line; return why it was lost, if it was (nothing of it stays in the file)."""
        data = line(entry)
        with self._lock:
            if self._fd is None:
                self.lost += 1
                return f"decision log {self.path} is not open"
            fd = self._fd
            why = self._lock_file(fd)
            if why:
                self.lost += 1
                return why
            try:
                start = os.fstat(fd).st_size
                try:
                    written = os.write(fd, data)
                except OSError as e:
                    self._cut(fd, start)
                    self.lost += 1
                    return f"cannot write decision log {self.path}: {e.strerror or e}"
                if written != len(data):
                    self._cut(fd, start)
                    self.lost += 1
                    return f"decision log {self.path}: short write ({written} of {len(data)} bytes), line dropped"
                return None
            finally:
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    pass

    def _lock_file(self, fd: int) -> str | None:
        """Take the file lock, waiting at most LOCK_WAIT; why not, if it was not taken.

        Anyone who can open the file can hold its lock: a verdict must never
        wait on that (the apt method answers apt from its fetch loop).  After
        one wait that ran out, later lines try once without waiting.
        """
        patience = 0.0 if self._lock_timed_out else LOCK_WAIT
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_timed_out = False
                return None
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._lock_timed_out = True
                    return f"decision log {self.path} is locked by another process; line dropped"
                time.sleep(0.01)
            except OSError as e:
                return f"cannot lock decision log {self.path}: {e.strerror or e}"

    @staticmethod
    def _cut(fd: int, start: int) -> None:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass  # nothing more can be done; the next reader skips a broken last line

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def line(entry: dict[str, Any]) -> bytes:
    """One log line: a time stamp and *entry*, as JSON, newline-terminated."""
    record = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **entry}
    return (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
