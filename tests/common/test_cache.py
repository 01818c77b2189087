"""DocumentCache: only regular files are read, never blocking; a directory
others can write is not used (warned once); writes are atomic."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from rebuildgate import cache as cache_module
from rebuildgate.cache import DocumentCache

URL = "http://rb.example/sources/hello/1.0-1/metadata"
MAX = 64 * 1024


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch) -> None:
    """The once-per-process warning, as a fresh process would give it."""
    monkeypatch.setattr(cache_module, "_warned", set())


@pytest.fixture
def directory(tmp_path) -> Path:
    d = tmp_path / "cache"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    return d


def bounded_get(cache: DocumentCache, url: str = URL, limit: float = 5.0) -> bytes | None:
    """cache.get in a helper thread: a get that blocks fails the test instead of hanging it."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("body", cache.get(url)), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"DocumentCache.get blocked for {limit:g}s"
    return box["body"]


def test_put_then_get_round_trip(directory) -> None:
    cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
    cache.put(URL, b"the link")
    assert cache.get(URL) == b"the link"
    entry = cache._path(URL)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o644
    assert os.listdir(directory) == [entry.name]  # no temporary left behind
    assert cache.get(URL, now=time.time() + 61) is None  # expired
    assert cache.get("http://rb.example/other") is None


def test_put_creates_the_directory_and_refuses_oversize(tmp_path) -> None:
    cache = DocumentCache(tmp_path / "new" / "cache", ttl=60, max_bytes=MAX)
    cache.put(URL, b"x" * (MAX + 1))
    cache.put(URL + "2", b"small")
    assert cache.get(URL) is None and cache.get(URL + "2") == b"small"


def _fifo(path: Path, tmp_path: Path, fifos: list) -> None:
    os.mkfifo(path)
    fifos.append(path)  # released at teardown, should a get have blocked on it


def _symlink_to_valid_entry(path: Path, tmp_path: Path, fifos: list) -> None:
    # A valid entry for this very URL, written elsewhere, linked in.
    elsewhere = DocumentCache(tmp_path / "elsewhere", ttl=60, max_bytes=MAX)
    elsewhere.put(URL, b"the link")
    path.symlink_to(elsewhere._path(URL))


def _symlink_to_dev_zero(path: Path, tmp_path: Path, fifos: list) -> None:
    path.symlink_to("/dev/zero")


def _directory(path: Path, tmp_path: Path, fifos: list) -> None:
    path.mkdir()


def _huge_sparse_file(path: Path, tmp_path: Path, fifos: list) -> None:
    with open(path, "wb") as f:
        f.write(URL.encode() + b"\n")
        f.truncate(8 << 30)  # 8 GiB, no blocks


PLANTED = {
    "fifo": _fifo,
    "symlink-to-a-valid-entry": _symlink_to_valid_entry,
    "symlink-to-dev-zero": _symlink_to_dev_zero,
    "directory": _directory,
    "huge-sparse-file": _huge_sparse_file,
}


@pytest.mark.parametrize("what", list(PLANTED))
def test_anything_but_a_regular_file_is_a_miss_at_once(directory, tmp_path, fifos, what) -> None:
    cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
    PLANTED[what](cache._path(URL), tmp_path, fifos)
    assert bounded_get(cache) is None


def test_bodies_up_to_max_bytes_are_served_and_larger_ones_are_not(directory) -> None:
    """The limit is on the body (the stored URL line comes on top of it)."""
    cache = DocumentCache(directory, ttl=60, max_bytes=16)
    cache._path(URL).write_bytes(URL.encode() + b"\n" + b"x" * 17)
    assert cache.get(URL) is None
    cache._path(URL).write_bytes(URL.encode() + b"\n" + b"x" * 16)
    assert cache.get(URL) == b"x" * 16


def _group_writable(directory: Path, monkeypatch) -> None:
    directory.chmod(0o775)


def _world_writable(directory: Path, monkeypatch) -> None:
    directory.chmod(0o757)


def _owned_by_another_user(directory: Path, monkeypatch) -> None:
    if os.geteuid() == 0:
        os.chown(directory, 65534, 65534)
    else:  # the directory is ours (not root's): look at it as another user would
        monkeypatch.setattr(cache_module.os, "geteuid", lambda: os.getuid() + 1)


UNTRUSTED = {"group-writable": _group_writable, "world-writable": _world_writable,
             "owned-by-another-user": _owned_by_another_user}


@pytest.mark.parametrize("how", list(UNTRUSTED))
def test_a_directory_others_can_write_is_not_used_and_warned_about_once(directory, monkeypatch, caplog, how) -> None:
    DocumentCache(directory, ttl=60, max_bytes=MAX).put(URL, b"the link")  # while it was fine
    UNTRUSTED[how](directory, monkeypatch)
    caplog.set_level(logging.WARNING, logger="rebuildgate")
    for _ in range(2):  # two runs in one process (two Verifiers): one warning
        cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
        assert cache.get(URL) is None
        cache.put(URL + "2", b"another")
        assert cache.get(URL + "2") is None
    warnings = [r.getMessage() for r in caplog.records if "evidence cache" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(directory) in warnings[0] and "not used" in warnings[0]
    assert not cache._path(URL + "2").exists()


def test_the_owner_may_be_root_or_the_user_running_the_check(directory) -> None:
    st = directory.stat()
    assert st.st_uid in (0, os.geteuid())
    cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
    cache.put(URL, b"the link")
    assert cache.get(URL) == b"the link"


def test_temporaries_left_by_a_killed_writer_are_swept(directory) -> None:
    stale = directory / f".{'ab' * 32}.x1y2z3"  # write_atomic names its temporaries .NAME.RANDOM
    fresh = directory / f".{'cd' * 32}.a4b5c6"
    for path in (stale, fresh):
        path.write_bytes(b"half a document")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    DocumentCache(directory, ttl=60, max_bytes=MAX).put(URL, b"the link")
    assert not stale.exists() and fresh.exists()


def test_cache_writes_are_not_flushed_to_disk(directory, monkeypatch) -> None:
    """An entry lost in a crash is a miss (and a torn one is re-verified):
    the cache is not state a verdict depends on, so no fsync per document."""
    from rebuildgate import atomic

    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(AssertionError("fsync")))
    cache = DocumentCache(directory, ttl=60, max_bytes=1024)
    cache.put("http://rb/doc", b"{}")
    assert cache.get("http://rb/doc") == b"{}"


def test_a_batch_read_refuses_what_a_single_read_refuses_and_serves_the_rest(directory, tmp_path, fifos) -> None:
    """get_many (the fetcher's one call for the reads asked for together):
    a FIFO, a symlink, a directory or an oversized file among the entries is
    a miss at once, and spoils none of the valid entries beside it."""
    cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
    urls = {what: f"{URL}/{what}" for what in PLANTED}
    for what, url in urls.items():
        cache.put(f"{url}/before", b"valid " + what.encode())
        PLANTED[what](cache._path(url), tmp_path, fifos)
        cache.put(f"{url}/after", b"after " + what.encode())
    asked = [u for url in urls.values() for u in (f"{url}/before", url, f"{url}/after")]
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("bodies", cache.get_many(asked)), daemon=True)
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive(), "DocumentCache.get_many blocked"
    expected = [b for what in PLANTED for b in (b"valid " + what.encode(), None, b"after " + what.encode())]
    assert box["bodies"] == expected


def test_a_batch_read_takes_one_time_for_all_and_an_error_is_a_miss(directory, monkeypatch) -> None:
    cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
    cache.put(URL, b"the link")
    cache.put(URL + "2", b"other")
    assert cache.get_many([URL, URL + "2"], now=time.time() + 61) == [None, None]  # both expired
    real = cache.get
    monkeypatch.setattr(cache, "get", lambda url, now=None: 1 / 0 if url == URL else real(url, now))
    assert cache.get_many([URL, URL + "2", "http://rb.example/none"]) == [None, b"other", None]


def _gated_writes(monkeypatch, gate: Path, ready: Path) -> None:
    """The detached writer says it is *ready* (a file), then waits for *gate* (a FIFO)
    to be opened by the test before its first entry."""
    original = cache_module._write_entry
    waited: list[bool] = []

    def gated(path: str, data: bytes) -> None:
        if not waited:
            waited.append(True)
            os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o600))
            os.close(os.open(gate, os.O_RDONLY))  # blocks until the test opens the FIFO for writing
        original(path, data)

    monkeypatch.setattr(cache_module, "_write_entry", gated)


def test_detached_writes_come_from_a_child_that_holds_nothing_of_ours(directory, tmp_path, monkeypatch) -> None:
    """apt waits for the pre-prompt hook and for EOF on what it gave it: the child
    writing the cache must hold none of it, and be out of the terminal's reach."""
    gate, ready = tmp_path / "gate", tmp_path / "ready"
    os.mkfifo(gate)
    _gated_writes(monkeypatch, gate, ready)
    cache = DocumentCache(directory, ttl=60, max_bytes=MAX)
    documents = [(f"http://rb/doc{i}", b"link %d" % i) for i in range(50)]
    read_end, write_end = os.pipe()  # stands for apt's pipes: the child must not keep them open
    try:
        pid = cache.write_detached(documents)
        assert pid is not None and pid != os.getpid()
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():  # the child has set itself up and waits at the gate
                assert time.monotonic() < deadline, "the detached writer never started writing"
                time.sleep(0.01)
            fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            assert fds == {0: os.devnull, 1: os.devnull, 2: os.devnull}, fds
            assert os.getsid(pid) == pid  # a session of its own: no terminal signal reaches it
            assert cache.get(documents[0][0]) is None  # nothing written before the gate opened
        finally:
            os.close(os.open(gate, os.O_WRONLY))  # let it write
        _, status = os.waitpid(pid, 0)
        assert status == 0
    finally:
        os.close(read_end)
        os.close(write_end)
    assert [cache.get(url) for url, _ in documents] == [body for _, body in documents]
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_detached_writes_skip_what_the_cache_does_not_keep(directory) -> None:
    cache = DocumentCache(directory, ttl=60, max_bytes=8)
    assert cache.write_detached([("http://rb/big", b"x" * 9), ("http://rb/a\nb", b"ok")]) is None  # nothing to write
    pid = cache.write_detached([("http://rb/big", b"x" * 9), ("http://rb/small", b"ok")])
    assert pid is not None
    os.waitpid(pid, 0)
    assert cache.get("http://rb/small") == b"ok" and cache.get("http://rb/big") is None
    assert DocumentCache(directory, ttl=0, max_bytes=8).write_detached([("http://rb/x", b"ok")]) is None
