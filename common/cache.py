"""A small on-disk cache of fetched evidence documents.

Only bodies that a rebuilder served with ``200 OK`` are kept, for
``cache_ttl`` seconds (an entry whose time lies ahead of the clock is a
miss).  A cached document is never trusted as such: it is verified again on
every use, exactly like a fresh one, and one that gives no vote is fetched
afresh before the verdict (:meth:`rebuildgate.verify.Verifier._report`), so
a poisoned or stale cache can neither forge a vote nor cost one.  Any error while
reading or writing the cache is treated as a miss: the cache can only make
verification faster, never make it fail.

Nor may it make verification slow.  Whatever sits in the directory, a read
cannot block: only regular files are read, opened without following
symlinks and without waiting for a writer (a FIFO opens at once and is then
refused), and anything larger than ``max_bytes`` is refused from its size
before a byte is read.  :meth:`DocumentCache.get` still touches the disk,
which may hang (a network file system), so the fetcher calls it on a
worker thread, never on its event loop, and bounds the wait; the reads its
jobs ask for together go to one worker in one call
(:meth:`DocumentCache.get_many`).

The directory itself must be owned by root or by the user running the
check, and writable by nobody else; otherwise the cache is off for the run
and that is said once per process.  Under apt the method reads the cache as
``_apt`` after dropping root: the default root-owned ``/var/cache/rebuildgate``
is then read but not written (root's runs of dnf and the CLI fill it).  An
admin who gives the directory to ``_apt`` lets the method write it, and root
processes then ignore it: documents written by a process that parses
untrusted input are not read by root.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from .atomic import write_atomic

log = logging.getLogger("rebuildgate")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: Cache directories already warned about in this process (one warning each).
_warned: set[str] = set()
_warned_lock = threading.Lock()


class DocumentCache:
    def __init__(self, directory: Path, ttl: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._trusted: bool | None = None  # the directory was checked (once per instance)
        self._swept = False

    def _path(self, url: str) -> Path:
        return self.directory / hashlib.sha256(url.encode("utf-8")).hexdigest()

    def get(self, url: str, now: float | None = None) -> bytes | None:
        """The cached body for *url*, or None.  Blocking: never call it on an event loop."""
        if self.ttl <= 0 or not self.usable(create=False):
            return None
        header = url.encode("utf-8") + b"\n"
        try:
            fd = os.open(self._path(url), _OPEN_FLAGS)
        except OSError:  # missing, a symlink (ELOOP), unreadable
            return None
        try:
            st = os.fstat(fd)
            age = (now or time.time()) - st.st_mtime
            if (not stat.S_ISREG(st.st_mode) or st.st_size > len(header) + self.max_bytes
                    or not 0 <= age <= self.ttl):  # written "in the future" by a wrong clock: a miss
                return None
            data = read_up_to(fd, len(header) + self.max_bytes + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        # The URL is stored in the file so a hash collision or a file moved
        # between entries cannot serve another URL's document.
        if not data.startswith(header) or len(data) - len(header) > self.max_bytes:
            return None
        return data[len(header):]

    def get_many(self, urls: list[str], now: float | None = None) -> list[bytes | None]:
        """:meth:`get` of each of *urls*, in one call: the fetcher reads the
        entries asked for together on one worker thread, one hand-off for
        them all.  Blocking, like :meth:`get`; an entry that cannot be read
        is a miss and never spoils the others."""
        now = time.time() if now is None else now
        bodies: list[bytes | None] = []
        for url in urls:
            try:
                bodies.append(self.get(url, now))
            except Exception:  # noqa: BLE001 - a miss, like any error reading the cache
                bodies.append(None)
        return bodies

    def put(self, url: str, body: bytes) -> None:
        """Store *body* for *url* (atomically), or do nothing.  Blocking, like :meth:`get`."""
        entry = self._entry(url, body)
        if entry is None or not self.usable(create=True):
            return
        if not self._swept:
            self._swept = True
            self._sweep()
        _write_entry(*entry)

    def _entry(self, url: str, body: bytes) -> tuple[Path, bytes] | None:
        """Where *url*'s entry goes and what it holds (the URL, then the body), or None if it is not kept."""
        if self.ttl <= 0 or len(body) > self.max_bytes or "\n" in url:
            return None
        return self._path(url), url.encode("utf-8") + b"\n" + body

    def write_detached(self, items: list[tuple[str, bytes]]) -> int | None:
        """Store each (url, body) from a child process that outlives this one; its pid, or None.

        For apt's pre-prompt hook, which apt waits for: a thousand entries
        written from a thread of a process whose event loop and checkers
        hold the interpreter cost that process a third of its time (every
        system call of the writer waits for the interpreter's lock again).
        The child is forked after the verdicts and writes with
        :func:`~rebuildgate.atomic.write_atomic` (no lock another thread
        could hold, bar tempfile's first-use one: see :func:`_write_entry`),
        in a session of its own, with its standard streams on /dev/null and
        every other descriptor closed, so neither apt nor a terminal waits
        for it or hears from it.  The method of the same apt
        run does not wait for it either: it reads the hook's documents from
        the run's hand-over file (:mod:`rebuildgate.apt.aptrun`).
        """
        entries = [e for url, body in items if (e := self._entry(url, body)) is not None]
        if not entries or not self.usable(create=True):
            return None
        sweep = not self._swept
        self._swept = True
        try:
            pid = os.fork()
        except OSError:
            return None
        if pid != 0:
            return pid
        try:  # the child: write, then _exit
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, _max_fd())
            if sweep:
                self._sweep()
            for path, data in entries:
                _write_entry(path, data)
        finally:
            os._exit(0)

    def remove_expired(self, now: float | None = None) -> int:
        """Delete entries older than the TTL (or dated in the future); how many.

        Lookups never serve them anyway; this only keeps the directory from
        growing for ever.  Blocking; best effort (only the owner of the
        directory can delete, so a run after dropping privileges removes nothing).
        """
        if not self.usable(create=False):
            return 0
        now = now or time.time()
        return remove_files(self.directory, lambda name: len(name) == 64 and not name.startswith("."),
                            lambda st: not 0 <= now - st.st_mtime <= self.ttl or not stat.S_ISREG(st.st_mode))

    def _sweep(self) -> None:
        """Remove temporaries that a writer killed mid-write left (writes run on a
        daemon thread, which ends with the process), once they are an hour old.
        Entries are named by a hex digest; write_atomic's temporaries start with a dot."""
        cutoff = time.time() - 3600
        remove_files(self.directory, lambda name: name.startswith("."),
                     lambda st: stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff)

    def usable(self, create: bool = False) -> bool:
        """Whether the directory may be used (*create*: made if missing); checked once,
        warned about once per process."""
        if self._trusted is not None:
            return self._trusted
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            if not create:
                return False  # nothing cached yet; a later put may create it
            try:
                self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
                st = os.stat(self.directory)
            except OSError:
                self._trusted = False  # not ours to create (e.g. after dropping privileges): no cache
                return False
        except OSError as e:
            self._trusted = False
            if e.errno != errno.EACCES:
                _warn_once(self.directory, f"cannot use it: {e.strerror or e}")
            return False
        problem = directory_problem(st)
        if problem:
            _warn_once(self.directory, problem)
        self._trusted = problem is None
        return self._trusted


def remove_files(directory: Path, named: Callable[[str], bool], doomed: Callable[[os.stat_result], bool]) -> int:
    """Delete the entries of *directory* whose name is *named* and whose lstat
    is *doomed*; how many.  Best effort: what cannot be read or deleted now
    stays for the next run (symlinks are judged, and removed, as themselves)."""
    removed = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not named(entry.name):
                    continue
                try:
                    if doomed(entry.stat(follow_symlinks=False)):
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    continue
    except OSError:
        pass
    return removed


def directory_problem(st: os.stat_result) -> str | None:
    """Why a directory with this stat may not hold the cache, or None.

    Another user who can write there could plant documents for root to
    parse, FIFOs and symlinks for it to trip over, or swap entries while
    they are read: such a directory is not used at all.
    """
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    euid = os.geteuid()
    if st.st_uid not in (0, euid):
        return f"it is owned by uid {st.st_uid}, neither root nor the user running this check (uid {euid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"it is writable by its group or by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _warn_once(directory: Path, problem: str) -> None:
    key = str(directory)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("rebuildgate: evidence cache %s is not used: %s (fix it, or set [fetch] cache_dir = \"\")",
                directory, problem)


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 256)
    except (OSError, ValueError):
        return 4096


def _write_entry(path: Path, data: bytes) -> None:
    """One entry, for :meth:`DocumentCache.put` and the detached child; an error is a miss later.

    Not flushed to disk: an entry lost in a crash is a miss, a torn one is
    re-verified and refetched like any bad entry.  In the forked child,
    :func:`~rebuildgate.atomic.write_atomic` takes no lock but tempfile's
    once, on its very first name; if a thread held it at the fork, only
    that child would wait, and nobody waits for it."""
    try:
        write_atomic(path, data, mode=0o644, durable=False)
    except OSError:
        pass  # not writable (e.g. after dropping privileges): just no cache


def read_up_to(fd: int, limit: int) -> bytes:
    """At most *limit* bytes from *fd*, read until its end or the limit."""
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
