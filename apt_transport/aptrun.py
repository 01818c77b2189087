"""One apt run, several processes: what the first learned and fetched, the next ones reuse.

``apt-get install`` runs the pre-prompt hook, then the method for the
downloads, then the pre-install hook, each a process of its own with its
own fetcher.  A rebuilder that answers just before the deadline trips the
fetcher's budget (:mod:`rebuildgate.budget`) after half a deadline, and
without this each process would pay that half-deadline again.  So the
pre-prompt hook, which runs as root, leaves the origins it stopped asking
in ``<cache_dir>/apt-run-<apt's pid>-<its start time>.trips`` and the
later processes of the same apt run (the same apt process, found by
walking up the process tree) adopt them.

This can only cost votes, never add one: an adopted origin is not asked,
its documents already in the evidence cache are still verified as usual.

The hook also leaves the documents it fetched, all in one file
(``apt-run-<key>.docs``), and the later processes serve them as answers
from the cache (:meth:`rebuildgate.fetch.Transport.preload_cache`): so the
method asks no rebuilder again without waiting for a thousand cache entries
to be written (the hook has them written by a detached child,
:meth:`rebuildgate.cache.DocumentCache.write_detached`, for later runs).
Like the cache they are verified again on use, and one that gives no vote
is fetched afresh: the file can save requests, never change a verdict.

A file is used only if it is a regular file owned by root in the cache
directory the cache itself trusts, not too large, and well formed; anything
else is ignored (the process then finds out for itself).  Files of runs
over an hour old are removed by the next hook.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

#: apt's front ends whose run the hooks and the method share.
APT_PROGRAMS = ("apt-get", "apt")
MAX_BYTES = 64 * 1024
MAX_ORIGINS = 64
MAX_AGE = 3600
SUFFIX = ".trips"
DOCUMENTS_SUFFIX = ".docs"
PREFIX = "apt-run-"
#: The documents file: this line, then ``<url>\n<size>\n<body>\n`` for each document.
DOCUMENTS_HEADER = b"rebuildgate apt-run documents 1\n"
#: Larger than the fetcher ever holds back (rebuildgate.fetch.HOLD_BYTES) with its URLs.
MAX_DOCUMENTS_BYTES = 48 * 1024 * 1024
MAX_URL = 8192


def run_key(pid: int | None = None, depth: int = 8) -> str | None:
    """``<pid>-<start time>`` of the apt process this one runs under, or None."""
    current = os.getppid() if pid is None else pid
    for _ in range(depth):
        if current <= 1:
            return None
        fields = _stat(current)
        if fields is None:
            return None
        comm, ppid, started = fields
        if comm in APT_PROGRAMS:
            return f"{current}-{started}"
        current = ppid
    return None


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(command name, parent pid, start time) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return None
    left, right = raw.find("("), raw.rfind(")")
    rest = raw[right + 2:].split()
    if left < 0 or right < left or len(rest) < 20:
        return None
    try:
        return raw[left + 1:right], int(rest[1]), rest[19]
    except ValueError:
        return None


def _path(cache_dir: Path, key: str, suffix: str = SUFFIX) -> Path:
    return Path(cache_dir) / f"{PREFIX}{key}{suffix}"


def save_trips(cache_dir: Path | None, key: str | None, trips: dict[str, str]) -> None:
    """Leave *trips* (origin -> reason) for the later processes of run *key*; best effort, root only."""
    if cache_dir is None or key is None or os.geteuid() != 0:
        return
    from rebuildgate.atomic import write_atomic

    try:
        _sweep(Path(cache_dir))
        if trips:
            body = json.dumps(dict(list(trips.items())[:MAX_ORIGINS]), sort_keys=True).encode()
            write_atomic(_path(cache_dir, key), body[:MAX_BYTES], mode=0o644, durable=False)
    except OSError:
        pass  # the later processes find out for themselves


def load_trips(cache_dir: Path | None, key: str | None) -> dict[str, str]:
    """What an earlier process of run *key* left, or nothing."""
    data = _read_roots(cache_dir, key, SUFFIX, MAX_BYTES)
    if data is None:
        return {}
    try:
        trips = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(trips, dict) or len(trips) > MAX_ORIGINS:
        return {}
    return {k: v for k, v in trips.items() if isinstance(k, str) and isinstance(v, str)}


def _read_roots(cache_dir: Path | None, key: str | None, suffix: str, limit: int) -> bytes | None:
    """The run's file with *suffix*, if root left it in a trusted cache directory and it is
    at most *limit* bytes; else None."""
    if cache_dir is None or key is None:
        return None
    from rebuildgate.cache import directory_problem, read_up_to

    try:
        if directory_problem(os.stat(cache_dir)) is not None:
            return None
        fd = os.open(_path(cache_dir, key, suffix), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_size > limit:
            return None
        data = read_up_to(fd, limit + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= limit else None


def save_documents(cache_dir: Path | None, key: str | None, documents: list[tuple[str, bytes]]) -> bool:
    """Leave *documents* ((url, body) pairs) for the later processes of run *key*; best effort, root only."""
    if cache_dir is None or key is None or os.geteuid() != 0 or not documents:
        return False
    from rebuildgate.atomic import write_atomic

    parts, size = [DOCUMENTS_HEADER], len(DOCUMENTS_HEADER)
    for url, body in documents:
        name = url.encode("utf-8")
        if b"\n" in name or len(name) > MAX_URL:
            continue
        entry = b"%s\n%d\n" % (name, len(body))
        size += len(entry) + len(body) + 1
        if size > MAX_DOCUMENTS_BYTES:
            break
        parts += [entry, body, b"\n"]
    try:
        write_atomic(_path(cache_dir, key, DOCUMENTS_SUFFIX), b"".join(parts), mode=0o644, durable=False)
        return True
    except OSError:
        return False  # the later processes read the cache, or ask


def load_documents(cache_dir: Path | None, key: str | None) -> dict[str, bytes]:
    """The documents an earlier process of run *key* left (url -> body), or nothing.

    A file that is not exactly a list of whole entries is ignored as a whole.
    """
    data = _read_roots(cache_dir, key, DOCUMENTS_SUFFIX, MAX_DOCUMENTS_BYTES)
    if data is None or not data.startswith(DOCUMENTS_HEADER):
        return {}
    documents: dict[str, bytes] = {}
    at = len(DOCUMENTS_HEADER)
    while at < len(data):
        url_end = data.find(b"\n", at, at + MAX_URL + 1)
        size_end = data.find(b"\n", url_end + 1, url_end + 22) if url_end >= 0 else -1
        if size_end < 0 or not data[url_end + 1:size_end].isdigit():
            return {}
        end = size_end + 1 + int(data[url_end + 1:size_end])
        if data[end:end + 1] != b"\n":  # every body is followed by a newline: a miscounted one is caught
            return {}
        try:
            url = data[at:url_end].decode("utf-8")
        except UnicodeDecodeError:
            return {}
        documents[url] = data[size_end + 1:end]
        at = end + 1
    return documents


def adopt_documents(verifier, cache_dir: Path | None, key: str | None) -> int:  # noqa: ANN001 - Verifier
    """Serve what an earlier process of this apt run fetched as answers from *verifier*'s cache; how many."""
    documents = load_documents(cache_dir, key)
    if documents:
        verifier.transport.preload_cache(documents)
    return len(documents)


def adopt_trips(verifier, cache_dir: Path | None, key: str | None) -> int:  # noqa: ANN001 - Verifier
    """Make *verifier* skip the origins an earlier process of this apt run stopped asking; how many."""
    trips = load_trips(cache_dir, key)
    if trips:
        budgets = verifier.transport.budgets

        async def adopt() -> None:  # the budgets belong to the fetcher's loop
            for origin, reason in trips.items():
                budgets.adopt(origin, f"{reason[:300]} (found by an earlier check of this apt run)")

        try:
            verifier.transport.run(adopt()).result(timeout=5)
        except Exception:  # noqa: BLE001 - not adopted: this process finds out for itself
            return 0
    return len(trips)


def tripped(verifier) -> dict[str, str]:  # noqa: ANN001 - Verifier
    """The origins *verifier*'s fetcher stopped asking, read on its loop."""
    budgets = verifier.transport.budgets

    async def read() -> dict[str, str]:
        return budgets.tripped()

    try:
        return verifier.transport.run(read()).result(timeout=5)
    except Exception:  # noqa: BLE001 - nothing handed on: the later processes find out for themselves
        return {}


def _sweep(directory: Path) -> None:
    from rebuildgate.cache import remove_files

    cutoff = time.time() - MAX_AGE
    remove_files(directory, lambda name: name.startswith(PREFIX) and name.endswith((SUFFIX, DOCUMENTS_SUFFIX)),
                 lambda st: st.st_mtime < cutoff)
