"""Fetch evidence from rebuilders: HTTP(S) and local directories, in parallel.

Rebuilders are untrusted network peers, so every request is bounded: a
connect and a read timeout, an overall deadline per artifact, a cap on the
body size (bodies are streamed, never held beyond the cap), compression
refused (no decompression bombs), and redirects followed only within the
same scheme and host.  Whatever goes wrong costs that rebuilder its vote
and nothing else: it becomes a :class:`~rebuildgate.errors.FetchError`.

``file://`` rebuilders read a directory that another machine filled (Qubes
dom0 has no network); paths are resolved and must stay inside that
directory, symlinks included.  An evidence bundle (``[fetch] bundle``,
written by ``rebuildgate collect`` on a machine that is trusted less) is
stricter: its paths are walked one segment at a time from the bundle
directory without following any symlink, and only regular files are read.
With ``[fetch] offline`` no request ever leaves the machine: the one place
that would open a connection (:meth:`Transport._fetch`) refuses first.

All requests of a :class:`Transport` run on one asyncio event loop (one
daemon thread), through the small strict HTTP/1.1 client of
:mod:`rebuildgate.http` (kept-alive connections, TLS verified against the
system's trust store, the package manager's proxy per URL from
:mod:`rebuildgate.proxy`).  This module adds what makes it a fetcher: the
deadlines and per-rebuilder budgets, one request per URL per run, the
on-disk cache, ``file://`` directories and the evidence bundle.

Which URLs hold a rebuilder's evidence (its layout) is
:mod:`rebuildgate.layouts`; :class:`EvidenceSource` fetches them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .budget import Budgets
from .cache import DocumentCache
from .errors import EvidenceMissing, FetchError
from .http import Fetcher, HttpClient, RequestTimeout, ca_bundle, host_of
from .layouts import (Location, bundle_url, evidence_locations, evidence_urls, location, rebuilderd_attestation,
                      rebuilderd_lookup)
from .model import Artifact
from .policy import FetchSettings, Rebuilder
from .pool import DaemonPool
from .proxy import DETECT_TIMEOUT, ProxyArg, ProxyChoice

log = logging.getLogger("rebuildgate")

#: The share of the time left to a request that a cache read may take.
CACHE_SHARE = 0.25
#: Cache reads asked for together that one worker reads in one call.
CACHE_BATCH = 32
#: Bytes of documents :meth:`Transport.hold_cache_writes` keeps back at most
#: (a transaction's links are a few MiB; a rebuilder sending garbage at the
#: size limit does not make the process hold all of it).
HOLD_BYTES = 32 * 1024 * 1024
MAX_REBUILDERD_RECORDS = 8


@dataclass(frozen=True)
class Document:
    """A fetched body and where it came from (``cached``: the on-disk cache)."""

    url: str
    body: bytes
    cached: bool = False


# --------------------------------------------------------------------------
# The event loop.  Every request of a Transport runs on one thread: waiting
# for a thousand answers costs one epoll call per batch of them, where a
# thread per request cost a wake-up, a GIL hand-off and a futex storm per
# answer (measured: 1000 documents from 5 rebuilders took 0.87 s of CPU on
# threads with urllib3, 0.06-0.09 s on the loop; see bench/).


class _EventLoop:
    """One daemon thread running an asyncio loop, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._inbox: list[tuple[Any, tuple]] = []  # calls posted by other threads (see post)
        self._inbox_lock = threading.Lock()

    def post(self, fn: Any, *args: Any) -> None:
        """Call ``fn(*args)`` on the loop soon; callable from any thread.

        ``call_soon_threadsafe`` wakes the loop (a write to its self-pipe)
        for every call; here only the first call posted since the loop last
        emptied the inbox does, the others ride along.  Worker threads hand
        back an answer per document, most of them while the loop is busy
        with the one before.  Nothing is called once the loop is closed.
        """
        with self._inbox_lock:
            self._inbox.append((fn, args))
            if len(self._inbox) > 1:
                return
        loop = self._loop
        if loop is None:
            raise RuntimeError("the loop has not started")
        loop.call_soon_threadsafe(self._empty_inbox)

    def _empty_inbox(self) -> None:
        with self._inbox_lock:
            calls, self._inbox = self._inbox, []
        for fn, args in calls:
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - one failing call must not drop the others
                log.debug("rebuildgate: %r failed on the loop: %r", fn, e)

    def future(self, work: "Future[Any]") -> "asyncio.Future[Any]":
        """An asyncio future (on the loop, which must be running) for a worker's concurrent *work*.

        Like :func:`asyncio.wrap_future`, cancelling it cancels *work*
        (if it has not started); its answer comes through :meth:`post`.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(work: "Future[Any]") -> None:  # on the worker (or here, if it is done already)
            try:
                self.post(_copy_state, work, fut)
            except RuntimeError:  # the loop is closed: nobody waits for it any more
                pass

        fut.add_done_callback(lambda f: work.cancel() if f.cancelled() else None)
        work.add_done_callback(done)
        return fut

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise FetchError("the fetcher is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run, args=(loop,), name=self._name, daemon=True)
                self._loop = loop
                self._thread.start()
            return self._loop

    def in_loop(self) -> bool:
        return self._thread is threading.current_thread()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
        finally:
            loop.close()

    def submit(self, coro: Any) -> "Future[Any]":
        """Run *coro* on the loop; a concurrent Future for its result."""
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop())
        except RuntimeError:  # the loop was closed meanwhile
            coro.close()
            raise FetchError("the fetcher is closed") from None
        except BaseException:
            coro.close()
            raise

    def close(self, cleanup: Any = None) -> None:
        with self._lock:
            loop, self._closed = self._loop, True
        if loop is None or loop.is_closed():
            return

        def stop() -> None:
            if cleanup is not None:
                cleanup()
            loop.stop()

        try:
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # closed meanwhile
            pass


def _hand_out(waiters: list[tuple[str, "asyncio.Future[Any]"]], work: "Future[list[Any]]") -> None:
    """Give each waiter its answer from a batch *work* (on the loop); a failed batch is a miss for all."""
    try:
        answers = work.result()
    except BaseException:  # noqa: BLE001 - a cache that cannot be read is a miss
        answers = [None] * len(waiters)
    for (_url, fut), answer in zip(waiters, answers):
        if not fut.done():  # its caller may have stopped waiting
            fut.set_result(answer)


def _copy_state(work: "Future[Any]", fut: "asyncio.Future[Any]") -> None:
    """Give *fut* (on the loop) the outcome of the concurrent *work*, unless it was cancelled meanwhile."""
    if fut.done():
        return
    if work.cancelled():
        fut.cancel()
        return
    error = work.exception()
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(work.result())


def _open_beneath(base: Path | None, parts: list[str], path: Path) -> int:
    """Open ``base/parts...`` one segment at a time, following no symlink below *base*.

    *base* is the admin's bundle directory (a symlink there is the admin's
    choice); everything below it came from the machine that wrote the
    bundle.  Each directory is opened relative to the one before with
    ``O_NOFOLLOW``, so neither a symlinked directory nor a symlinked file
    is ever entered, and the file is opened non-blocking (a FIFO then opens
    at once and is refused by the caller's fstat, it is never read).
    """
    if base is None or not parts or any(p in ("", ".", "..") for p in parts):
        raise FetchError(f"{path}: not a path inside the evidence bundle; refused")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise EvidenceMissing(f"no evidence at {path} (no bundle at {base})") from None
    except OSError as e:
        raise FetchError(f"cannot open the evidence bundle {base}: {e.strerror or e}") from None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                fd = os.open(part, flags | (os.O_NONBLOCK | os.O_NOCTTY if last else os.O_DIRECTORY), dir_fd=dfd)
            except FileNotFoundError:
                raise EvidenceMissing(f"no evidence at {path}") from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FetchError(f"{path}: {'/'.join(parts[:i + 1])} in the evidence bundle is a symbolic "
                                     "link or not a directory; refused") from None
                raise FetchError(f"cannot read {path}: {e.strerror or e}") from None
            if last:
                return fd
            os.close(dfd)
            dfd = fd
    finally:
        os.close(dfd)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------


class Transport:
    """GET with limits, for http(s):// and file:// locations; thread-safe.

    Besides the limits in the module docstring:

    * one request per URL: concurrent callers share it, and recent bodies
      are kept (at most ``MEMO_BYTES``) for the other binaries of a source;
    * each rebuilder's origin has a time and CPU budget for this Transport
      (one apt or dnf run, :mod:`rebuildgate.budget`): a host that timed
      out once, answered slower than half the deadline three times, or sent
      three costly documents that did not verify is not asked again, and
      its requests still in flight are abandoned, so a dead or crawling
      rebuilder costs about one deadline, not one per package;
    * the on-disk cache is read and written on worker threads, never on
      the loop (the reads asked for in one turn of the loop in one call): a
      read that hangs (a network file system) costs at most a quarter of
      the time left, after which the cache is off for the run;
    * :meth:`slots` bounds the jobs of a Verifier to ``max_workers``.

    The coroutine :meth:`fetch` runs on the Transport's event loop
    (:meth:`run` hands work to it); :meth:`get` is the blocking form for
    threads.  All state below is touched on the loop thread only.
    """

    MEMO_BYTES = 8 * 1024 * 1024

    def __init__(self, settings: FetchSettings, proxy: ProxyArg = None,
                 cache: DocumentCache | None = None, http: Fetcher | None = None) -> None:
        self.settings = settings
        self.cache = cache
        # The policy's [fetch] proxy wins over everything; else the package
        # manager's choice per URL (apt's per-host settings, DIRECT and
        # Proxy-Auto-Detect; dnf's proxy=), else the environment.
        self.proxies = ProxyChoice.single(settings.proxy) if settings.proxy else ProxyChoice.of(proxy)
        self._proxy_lookups: dict[str, asyncio.Future[Any]] = {}
        self._io = _EventLoop("rbg-io")
        self._blocking = DaemonPool(max(4, min(settings.max_workers, 16)), "rbg-blocking")
        #: The network: the strict client of rebuildgate.http (an in-memory fake in unit tests).
        self.http: Fetcher = http or HttpClient(settings, ca_bundle(), self._blocking, self._proxy)
        self._slots: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._done: OrderedDict[str, bytes | None] = OrderedDict()  # None: missing (404)
        self._done_bytes = 0
        self.budgets = Budgets(settings.deadline)
        self._active: dict[str, set[asyncio.Task[Any]]] = {}  # requests in flight, by origin
        self._abandoned: set[asyncio.Task[Any]] = set()  # cancelled because their origin was tripped
        self._cache_writer = DaemonPool(1, "rbg-cache")  # writes never queue ahead of reads
        self._from_cache: set[str] = set()  # URLs whose answer in this run came from the disk cache
        self._not_cached: set[str] = set()  # URLs this run looked for in the disk cache and did not find
        self._cache_off = False
        self._cache_batch: list[tuple[str, asyncio.Future[bytes | None]]] = []  # reads not yet handed out
        #: Cache writes kept back for the caller (hold_cache_writes), and their bytes; None: written as they come.
        self._held: list[tuple[str, bytes]] | None = None
        self._held_room = 0
        #: Documents handed over by an earlier process of the same run (preload_cache): read as cache hits.
        self._preloaded: dict[str, bytes] = {}

    # -- threads <-> loop -----------------------------------------------------

    def run(self, coro: Any) -> "Future[Any]":
        """Start *coro* on this Transport's loop; a concurrent Future for its result."""
        return self._io.submit(coro)

    def on_loop(self, work: "Future[Any]") -> "asyncio.Future[Any]":
        """Await a worker thread's *work* on the loop (:func:`asyncio.wrap_future`,
        with one wake-up of the loop for the answers that come together)."""
        return self._io.future(work)

    def get(self, url: str, deadline: float, root: str | None = None, use_cache: bool = True) -> bytes:
        """Blocking :meth:`fetch`, for threads other than the loop's."""
        return self.wait(self.fetch(url, deadline, root, use_cache), deadline)

    def wait(self, coro: Any, deadline: float) -> Any:
        """Run *coro* on the loop and wait for it, never much past *deadline*."""
        if self._io.in_loop():
            coro.close()
            raise RuntimeError("Transport.wait called on the fetcher's own loop")
        fut = self.run(coro)
        try:
            return fut.result(timeout=max(deadline - time.monotonic(), 0.0) + 1.0)
        except TimeoutError:
            fut.cancel()
            raise FetchError("no answer within the deadline (the fetcher is stuck)") from None
        except CancelledError:
            raise FetchError("the fetcher was closed before the answer came") from None

    def close(self) -> None:
        self._io.close(self.http.close)
        self._blocking.shutdown()
        self._cache_writer.shutdown()

    def flush_cache(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for the cache writes queued so far; True when all are done.

        Writes go to disk in the background and :meth:`close` drops those not
        started, so a process that ends right after its verdicts (apt's
        pre-prompt hook, whose documents the method then reads) waits here
        first.  The writer is one thread: a no-op queued behind the writes
        runs when they are done.
        """
        if self.cache is None:
            return True
        try:
            self._cache_writer.submit(lambda: None).result(timeout=max(timeout, 0.0))
            return True
        except Exception:  # noqa: BLE001 - a cache that cannot be written is a cache miss later
            return False

    def hold_cache_writes(self, max_bytes: int = HOLD_BYTES) -> None:
        """Keep the documents fetched from now on for :meth:`held_cache_writes`
        instead of writing them to the cache (up to *max_bytes* of them; any
        beyond are written as usual).  Call before the first fetch.

        For a process that ends right after its verdicts and hands what it
        fetched on itself (apt's pre-prompt hook): writing as it goes would
        take the interpreter from the fetcher's loop once per document.
        """
        self._held, self._held_room = [], max_bytes

    def held_cache_writes(self) -> list[tuple[str, bytes]]:
        """The (url, body) pairs kept back so far, handed over once (read on the loop)."""
        async def take() -> list[tuple[str, bytes]]:
            held, self._held = self._held or [], None
            return held

        try:
            return self.run(take()).result(timeout=5)
        except Exception:  # noqa: BLE001 - nothing handed over: later processes fetch for themselves
            return []

    def preload_cache(self, documents: dict[str, bytes]) -> None:
        """Serve *documents* (url -> body) as answers from the cache for the rest of this run.

        What an earlier process of the same run fetched (apt's pre-prompt
        hook, for the method: :mod:`rebuildgate.apt.aptrun`).  They are what
        the cache holds in all but where: verified again on use, and one that
        gives no vote is fetched afresh.  Call before the first lookup.
        """
        if self.cache is not None:
            self._preloaded = {url: body for url, body in documents.items() if len(body) <= self.settings.max_bytes}

    # -- on the loop ----------------------------------------------------------

    def slots(self) -> asyncio.Semaphore:
        """At most ``max_workers`` verification jobs at once (taken by the Verifier)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(self.settings.max_workers, 1))
        return self._slots

    def proxy_for(self, url: str) -> str | None:
        """The proxy for *url* (None: direct); may run apt's auto-detect program, so not on the loop."""
        return self.proxies.for_url(url, self._detect_timeout())

    def _detect_timeout(self) -> float:
        return min(DETECT_TIMEOUT, self.settings.deadline)

    async def _proxy(self, url: str, deadline: float) -> str | None:
        """:meth:`proxy_for` on the loop: an auto-detect program runs on a worker thread,
        once per host (concurrent requests wait for the same run), within *deadline*."""
        if not self.proxies.may_block(url):
            return self.proxies.for_url(url)
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        lookup = self._proxy_lookups.get(key)
        if lookup is None:
            timeout = min(self._detect_timeout(), max(deadline - time.monotonic(), 0.0))
            lookup = self._proxy_lookups[key] = asyncio.wrap_future(self._blocking.submit(
                self.proxies.for_url, url, timeout))
            lookup.add_done_callback(lambda f: (self._proxy_lookups.pop(key, None), f.cancelled() or f.exception()))
        return await asyncio.shield(lookup)

    async def fetch(self, url: str, deadline: float, root: str | None = None, use_cache: bool = True,
                    fresh: bool = False) -> bytes:
        """Fetch *url* (an internal location, see :func:`location`) by *deadline*.

        ``root`` bounds file:// reads; ``use_cache=False`` skips the on-disk
        cache (halt feeds must be fresh); ``fresh=True`` asks the rebuilder
        again although this run or the cache already had an answer (which
        the fresh one then replaces in the cache).
        """
        if fresh:
            self._done.pop(url, None)
            self._from_cache.discard(url)
        if url in self._done:
            body = self._done[url]
            self._done.move_to_end(url)
            if body is None:
                raise EvidenceMissing(f"no evidence at {url}")
            return body
        shared = None if fresh else self._inflight.get(url)  # a fresh answer never shares a cache read
        if shared is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    return await asyncio.shield(shared)
            except TimeoutError:
                raise RequestTimeout(f"no answer within the deadline from {url}") from None
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[url] = fut
        try:
            body = await self._fetch(url, deadline, root, use_cache, fresh)
        except BaseException as e:
            if isinstance(e, EvidenceMissing):
                self._remember(url, None)
            else:
                self._inflight.pop(url, None)  # transient errors are retried by the next caller
            # Those sharing it get the same error; a cancellation (its caller's
            # deadline) is told to them, not passed on as their own.
            fut.set_exception(e if isinstance(e, Exception) else
                              FetchError(f"no answer from {host_of(url)} within another package's deadline"))
            fut.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        self._remember(url, body)
        fut.set_result(body)
        return body

    def _remember(self, url: str, body: bytes | None) -> None:
        self._inflight.pop(url, None)
        self._done[url] = body
        self._done_bytes += len(body or b"")
        while self._done_bytes > self.MEMO_BYTES and self._done:
            _, old = self._done.popitem(last=False)
            self._done_bytes -= len(old or b"")

    @staticmethod
    def origin(url: str, root: str | None = None) -> str:
        """Whose budget a request for *url* spends: its host, or for ``file://``
        the rebuilder's directory *root*."""
        if url.startswith("file://"):
            return root or url.rsplit("/", 1)[0]
        return host_of(url)

    def charge_check(self, account: str, cpu: float) -> None:
        """A document charged to *account* (an :class:`EvidenceSource`'s
        ``check_account``) gave no vote after *cpu* seconds of checking (on the
        loop); once the account is overdrawn its documents are not checked."""
        self.budgets.failed_check(account, cpu)

    async def cached_bodies(self, urls: list[str], deadline: float) -> list[bytes | None] | None:
        """What :meth:`fetch` would answer for each of *urls* from the on-disk
        cache alone (None where it would ask the network), or None if it would
        not read the cache for them at all (no cache or the cache off, offline,
        a ``file://`` URL, or one this run already holds or is fetching).
        Read as :meth:`fetch` reads the cache: off the loop, with the reads of
        the same turn, each within a quarter of the time left."""
        cache = self.cache
        if (cache is None or self._cache_off or self.settings.offline
                or any(url.startswith("file://") or url in self._done or url in self._inflight for url in urls)):
            return None
        bodies = list(await asyncio.gather(*(self._cache_get(cache, url, deadline) for url in urls)))
        for url, body in zip(urls, bodies):
            (self._from_cache if body is not None else self._not_cached).add(url)
        return bodies

    def came_from_cache(self, url: str) -> bool:
        """Whether this run's answer for *url* was read from the on-disk cache."""
        return url in self._from_cache

    async def _fetch(self, url: str, deadline: float, root: str | None, use_cache: bool, fresh: bool) -> bytes:
        origin = self.origin(url, root)
        if url.startswith("file://"):
            return await self._metered(origin, self._blocking_call, self._read_file, url, root, deadline)
        if self.settings.offline:
            raise FetchError(f"not fetching {host_of(url)}: [fetch] offline = true (no network request is made)")
        cache = self.cache if use_cache and not self._cache_off else None
        if cache and not fresh and url not in self._not_cached:  # a miss is not looked for twice
            cached = await self._cache_get(cache, url, deadline)
            if cached is not None:
                self._from_cache.add(url)
                return cached
        body = await self._metered(origin, self.http.get, url, deadline)
        if cache:
            if self._held is not None and len(body) <= self._held_room:
                self._held.append((url, body))
                self._held_room -= len(body)
            else:
                self._cache_writer.submit(cache.put, url, body)  # in the background: never delays a verdict
        return body

    async def _metered(self, origin: str, fetch: Any, *args: Any) -> bytes:
        """``await fetch(*args)``: one request to *origin*, under its budget.

        It is refused at once if *origin* is not asked again; counted as slow
        when it reaches half the deadline; and ended with the budget's reason
        if *origin* is tripped while it is in flight (:meth:`_abandon`).
        """
        refusal = self.budgets.refusal(origin)
        if refusal is not None:
            raise refusal
        task = asyncio.current_task()
        assert task is not None
        active = self._active.setdefault(origin, set())
        active.add(task)
        timer = asyncio.get_running_loop().call_later(self.settings.deadline / 2, self._half_deadline, origin)
        try:
            return await fetch(*args)
        except asyncio.CancelledError:
            if task not in self._abandoned:
                raise
            self._abandoned.discard(task)
            task.uncancel()  # our own cancel, told as the reason instead
            raise self.budgets.refusal(origin) or FetchError(f"{origin}: request abandoned") from None
        except RequestTimeout as e:
            if self.budgets.timed_out(origin, str(e)):
                self._abandon(origin)
            raise
        finally:
            timer.cancel()
            active.discard(task)
            if not active:
                self._active.pop(origin, None)

    def _half_deadline(self, origin: str) -> None:
        if self.budgets.slow_answer(origin):
            self._abandon(origin)

    def _abandon(self, origin: str) -> None:
        """End the requests still in flight to *origin*, which is not asked again."""
        current = asyncio.current_task()
        for task in list(self._active.get(origin, ())):
            if task is not current and not task.done() and task not in self._abandoned:
                self._abandoned.add(task)
                task.cancel()

    async def _cache_get(self, cache: DocumentCache, url: str, deadline: float) -> bytes | None:
        """The cached body of *url*, read on a worker thread, or None.

        A cache read that takes more than a quarter of the time left is a
        miss (the rest is for the rebuilder), and the cache is off for the
        rest of the run: the worker it holds may be stuck for good.  The
        reads asked for in one turn of the loop are read together, in one
        blocking call (:meth:`_read_cached`); each caller still waits only
        its own quarter.
        """
        preloaded = self._preloaded.get(url)
        if preloaded is not None:
            return preloaded
        wait = max(deadline - time.monotonic(), 0.0) * CACHE_SHARE
        try:
            async with asyncio.timeout(wait):
                return await self._cache_read(cache, url)
        except TimeoutError:
            if not self._cache_off:
                self._cache_off = True
                log.warning("rebuildgate: reading the evidence cache %s took more than %.1fs; "
                            "not used for the rest of this run", cache.directory, wait)
            return None
        except Exception:  # noqa: BLE001 - the cache can only make things faster, never fail them
            return None

    def _cache_read(self, cache: DocumentCache, url: str) -> "asyncio.Future[bytes | None]":
        """A future for *url*'s cached body, read with the others asked for in this turn of the loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes | None] = loop.create_future()
        if not self._cache_batch:
            loop.call_soon(self._read_cached, cache)
        self._cache_batch.append((url, fut))
        return fut

    def _read_cached(self, cache: DocumentCache) -> None:
        """Hand the reads asked for so far to the worker threads, CACHE_BATCH to a call (on the loop).

        A hand-off per document (a worker woken, then the loop woken with
        the answer) was about a tenth of the CPU of a warm 200-package run
        (bench/core_bench.py).
        """
        batch, self._cache_batch = [r for r in self._cache_batch if not r[1].done()], []
        for i in range(0, len(batch), CACHE_BATCH):
            part = batch[i:i + CACHE_BATCH]
            work = self._blocking.submit(cache.get_many, [url for url, _ in part])

            def answered(work: "Future[list[bytes | None]]", part: list = part) -> None:  # on the worker
                try:
                    self._io.post(_hand_out, part, work)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass

            work.add_done_callback(answered)

    async def _blocking_call(self, fn: Any, url: str, root: str | None, deadline: float) -> bytes:
        try:
            async with asyncio.timeout_at(deadline):
                return await self._io.future(self._blocking.submit(fn, url, root))
        except TimeoutError:
            raise RequestTimeout(f"reading {url[len('file://'):]} took longer than the deadline") from None

    def _read_file(self, url: str, root: str | None) -> bytes:
        """Read a local evidence file: a regular file inside *root*, never a FIFO or device.

        Inside the evidence bundle no symlink is followed at all (and a
        directory where a document should be is refused, not missing): the
        bundle was written by a machine trusted less than this one.
        """
        path = Path(url[len("file://"):])
        in_bundle = self._bundle_parts(url)
        if in_bundle is not None:
            fd = _open_beneath(self.settings.bundle, in_bundle, path)
        else:
            fd = self._open_inside(path, root)
        try:  # before os.fdopen, which refuses a directory with IsADirectoryError
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode) and in_bundle is None:
                raise EvidenceMissing(f"no evidence at {path} (a directory)")
            if not stat.S_ISREG(mode):
                raise FetchError(f"{path} is not a regular file; refused")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as f:
            try:
                body = f.read(self.settings.max_bytes + 1)
            except OSError as e:
                raise FetchError(f"cannot read {path}: {e.strerror or e}") from None
        if len(body) > self.settings.max_bytes:
            raise FetchError(f"{path} is larger than max_bytes ({self.settings.max_bytes})")
        return body

    def _bundle_parts(self, url: str) -> list[str] | None:
        """The segments of *url* below the evidence bundle, or None if it is not in it."""
        bundle = self.settings.bundle
        if bundle is None:
            return None
        prefix = f"file://{str(bundle).rstrip('/')}/"
        if not url.startswith(prefix):
            return None
        return url[len(prefix):].split("/")

    @staticmethod
    def _open_inside(path: Path, root: str | None) -> int:
        """Open *path* if it resolves (symlinks followed) inside the ``file://`` rebuilder's *root*."""
        base = Path(root[len("file://"):]) if root and root.startswith("file://") else path.parent
        try:
            real, real_base = path.resolve(strict=True), base.resolve(strict=True)
        except FileNotFoundError:
            raise EvidenceMissing(f"no evidence at {path}") from None
        except (OSError, RuntimeError, ValueError) as e:
            raise FetchError(f"cannot read {path}: {e}") from None
        if real != real_base and real_base not in real.parents:
            raise FetchError(f"{path} leads outside the evidence directory {base}")
        try:
            return os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            raise FetchError(f"cannot read {path}: {e.strerror or e}") from None

class EvidenceSource:
    """Where one rebuilder publishes, and how to get its documents for an artifact."""

    def __init__(self, rebuilder: Rebuilder, transport: Transport) -> None:
        self.rebuilder = rebuilder
        self.transport = transport
        self.base = location(rebuilder.url)
        #: What bounds its file:// reads (rebuilderd URLs are built from the policy's URL as written).
        self.root = rebuilder.url if rebuilder.layout == "rebuilderd" else self.base
        settings = transport.settings
        #: Its directory in the evidence bundle, if the policy names one.
        self.bundle_root = (f"file://{str(settings.bundle).rstrip('/')}/{rebuilder.name}"
                            if settings.bundle is not None else None)
        #: Whether a document missing from the bundle is asked of the rebuilder
        #: itself: always, unless offline (a file:// rebuilder is no network).
        self.fallback = not settings.offline or rebuilder.url.startswith("file://")
        #: Whose time and CPU budget its requests spend (see rebuildgate.budget).
        self.origin = transport.origin(self.bundle_root or self.root, self.bundle_root or self.root)
        #: The account its document checks are charged to: this rebuilder's
        #: own, not its host's, so that a rebuilder sending costly garbage
        #: from a host it shares (a static web host, a shared rebuilderd)
        #: never stops another rebuilder's documents from being checked.
        self.check_account = f"{self.origin} ({rebuilder.name})"

    def urls(self, artifact: Artifact) -> list[str]:
        return evidence_urls(self.rebuilder, artifact)

    async def get(self, loc: Location, deadline: float, fresh: bool = False) -> Document:
        """One document: from the bundle if there is one, else (or if it is
        missing there and :attr:`fallback`) from the rebuilder."""
        if self.bundle_root is not None:
            where = bundle_url(str(self.transport.settings.bundle), self.rebuilder.name, loc)
            try:
                return Document(where, await self.transport.fetch(where, deadline, self.bundle_root, fresh=fresh))
            except EvidenceMissing:
                if not self.fallback:
                    raise
        return Document(loc.url, await self.transport.fetch(loc.url, deadline, self.root, fresh=fresh))

    def documents(self, artifact: Artifact, deadline: float) -> list[Document]:
        """Blocking :meth:`fetch_documents`, for threads other than the fetcher's."""
        return self.transport.wait(self.fetch_documents(artifact, deadline), deadline)

    async def cached_documents(self, artifact: Artifact, deadline: float) -> list[Document] | None:
        """The documents :meth:`fetch_documents` would read from the on-disk
        cache, if every one of them is there; else None (and nothing else is
        asked).  Only for layouts with fixed URLs and no evidence bundle: a
        rebuilderd lookup page or a bundle is read as it always is."""
        if self.rebuilder.layout == "rebuilderd" or self.bundle_root is not None:
            return None
        try:
            urls = [loc.url for loc in evidence_locations(self.rebuilder, artifact)]
        except FetchError:
            return None  # fetch_documents says why
        bodies = await self.transport.cached_bodies(urls, deadline)
        if not bodies or any(body is None for body in bodies):
            return None
        return [Document(url, body, True) for url, body in zip(urls, bodies)]

    async def fetch_documents(self, artifact: Artifact, deadline: float, fresh: bool = False) -> list[Document]:
        """The rebuilder's documents for *artifact*; ``fresh`` asks again past the cache."""
        if self.rebuilder.layout == "rebuilderd":
            docs = await self._rebuilderd(artifact, deadline, fresh)
        else:
            docs = [await self.get(loc, deadline, fresh) for loc in evidence_locations(self.rebuilder, artifact)]
        return [Document(d.url, d.body, self.transport.came_from_cache(d.url)) for d in docs]

    async def _rebuilderd(self, artifact: Artifact, deadline: float, fresh: bool = False) -> list[Document]:
        rb = self.rebuilder
        page = await self.get(rebuilderd_lookup(rb.url, artifact), deadline, fresh)
        locations = rebuilderd_attestations(rb.url, page, artifact)
        if not locations:
            raise EvidenceMissing(f"{host_of(rb.url)} has no rebuild of {artifact.label}")
        docs, errors = [], []
        for loc in locations:
            try:
                docs.append(await self.get(loc, deadline, fresh))
            except FetchError as e:
                errors.append(e)
        if not docs:
            raise errors[0]
        return docs


def rebuilderd_attestations(url: str, page: Document, artifact: Artifact) -> list[Location]:
    """The attestations a rebuilderd lookup answer (*page*) lists for *artifact*
    (at most ``MAX_REBUILDERD_RECORDS``); records without usable ids are skipped."""
    try:
        parsed = json.loads(page.body)
        records = parsed["records"] if isinstance(parsed, dict) else parsed
        if not isinstance(records, list):
            raise TypeError("records is not a list")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise FetchError(f"{page.url} is not a rebuilderd package list: {str(e)[:80]}") from None
    out = []
    for rec in records:
        if not isinstance(rec, dict) or rec.get("name") not in (None, artifact.name):
            continue
        try:
            out.append(rebuilderd_attestation(url, rec.get("build_id"), rec.get("artifact_id")))
        except FetchError:
            continue  # a record without usable ids
    return out[:MAX_REBUILDERD_RECORDS]


def make_transport(settings: FetchSettings, proxy: ProxyArg = None) -> Transport:
    cache = None
    if settings.cache_dir and settings.cache_ttl > 0:
        cache = DocumentCache(settings.cache_dir, settings.cache_ttl, settings.max_bytes)
    return Transport(settings, proxy, cache)

