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
daemon thread) as HTTP/1.1 with kept-alive connections, TLS verified
against the system's trust store, and the package manager's proxy.  An
apt or dnf transaction asks for thousands of documents at once; on threads
(requests and urllib3, one per request) the wake-ups and GIL hand-offs
cost about ten times the CPU of the requests themselves, which on a small
machine was most of rebuildgate's overhead (bench/core_bench.py,
bench/apt_bench.py).  The client here is deliberately small and strict:
at most 100 strictly formed header lines in 64 KiB, bodies must be
framed by Content-Length, chunked coding or the end of the connection,
and every read is bounded in size and time.

Which URLs hold a rebuilder's evidence (its layout) is
:mod:`rebuildgate.layouts`; :class:`EvidenceSource` fetches them.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import stat
import threading
import time
from collections import OrderedDict
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from .budget import Budgets
from .cache import DocumentCache
from .errors import EvidenceMissing, FetchError
from .layouts import (Location, bundle_url, evidence_locations, evidence_urls, location, rebuilderd_attestation,
                      rebuilderd_lookup)
from .model import Artifact
from .policy import FetchSettings, Rebuilder
from .pool import DaemonPool
from .proxy import DETECT_TIMEOUT, ProxyArg, ProxyChoice

log = logging.getLogger("rebuildgate")

MAX_REDIRECTS = 3
#: The share of the time left to a request that a cache read may take.
CACHE_SHARE = 0.25
#: Cache reads asked for together that one worker reads in one call.
CACHE_BATCH = 32
MAX_REBUILDERD_RECORDS = 8
USER_AGENT = "rebuildgate/0.1"


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


# --------------------------------------------------------------------------
# HTTP/1.1 on the loop.  What is parsed here is bounded and strict: a status
# line, header lines (at most MAX_HEADERS of them in MAX_HEAD_BYTES, no
# obsolete folding), and a body framed by Content-Length, chunked transfer
# coding or the end of the connection; anything else is an error.  (The
# standard library's header parser goes through the email package, which
# cost more CPU than everything else in a request put together.)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_INTERIM = 8  # 1xx answers before the real one
MAX_IDLE = 64  # kept-alive connections per host
DRAIN_LIMIT = 64 * 1024  # an error page this small is read so its connection can be reused
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n")
#: field-name ":" field-value; no obsolete line folding, no space before the colon.
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([^\r\n]*)\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")


class _Timeout(FetchError):
    """A rebuilder that did not answer in time (trips the per-host breaker)."""


class _Refused(FetchError):
    """A reused connection the server had closed: safe to retry once (GET)."""


class _Headers:
    """Header fields by lower-case name; repeated fields keep every value."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._fields.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._fields.get(name.lower(), ()))


@dataclass
class _Response:
    status: int
    headers: _Headers
    body: bytes


@dataclass
class _Route:
    """How to reach one URL: the server itself or a proxy, and what to say."""

    key: tuple  # the idle-connection pool this route uses
    authority: str  # the URL's host[:port], for the Host header and messages
    host: str  # where the TCP connection goes
    port: int
    tls_host: str | None  # TLS to the server (direct https, or inside CONNECT)
    proxy_tls: str | None  # TLS to the proxy itself (an https:// proxy)
    connect_to: str | None  # CONNECT host:port through the proxy
    target: str  # request target: origin-form, or absolute-form to an http proxy
    extra: bytes  # Proxy-Authorization, when the proxy URL has credentials


class _Conn:
    __slots__ = ("reader", "writer", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def usable(self) -> bool:
        """Open, and holding no bytes nobody asked for (they would be read as
        the next request's answer)."""
        return not self.reader.at_eof() and not self.writer.is_closing() and not _buffered(self.reader)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _route(url: str, proxy: str | None) -> _Route:
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname
    if scheme not in ("http", "https") or not host:
        raise FetchError(f"cannot fetch {url[:80]}: not an http(s) URL")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"cannot fetch {url[:80]}: bad port") from None
    if parts.username is not None:
        raise FetchError(f"cannot fetch from {_host(url)}: credentials in a rebuilder URL are not supported")
    netloc = parts.netloc
    origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not proxy:
        return _Route(("direct", scheme, host, port), netloc, host, port, host if scheme == "https" else None, None,
                      None, origin, b"")
    p = urlsplit(proxy)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise FetchError(f"proxy {_host(proxy)!r} is not an http:// or https:// URL")
    extra = b""
    if p.username is not None:
        creds = f"{unquote(p.username)}:{unquote(p.password or '')}".encode("utf-8")
        extra = b"Proxy-Authorization: Basic " + base64.b64encode(creds) + b"\r\n"
    try:
        pport = p.port or (443 if p.scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"proxy {_host(proxy)!r} has a bad port") from None
    proxy_tls = p.hostname if p.scheme == "https" else None
    if scheme == "https":  # a tunnel: the proxy sees only host:port
        return _Route(("tunnel", proxy, host, port), netloc, p.hostname, pport, host, proxy_tls, f"{host}:{port}"
                      if ":" not in host else f"[{host}]:{port}", origin, extra)
    return _Route(("proxy", proxy), netloc, p.hostname, pport, None, proxy_tls, None, f"http://{netloc}{origin}",
                  extra)


class _HttpClient:
    """GETs with keep-alive pools, proxies and TLS, on one event loop.

    Every coroutine here runs on the Transport's loop; bounds are enforced by
    the caller's ``asyncio.timeout``.  Name resolution (a blocking call) runs
    on daemon threads, once per host and Transport.
    """

    def __init__(self, settings: FetchSettings, ca_certs: str | None, blocking: DaemonPool) -> None:
        self.settings = settings
        self._ca_certs = ca_certs
        self._tls: ssl.SSLContext | None = None
        self._blocking = blocking
        self._idle: dict[tuple, list[_Conn]] = {}
        self._addresses: dict[tuple[str, int], list[tuple]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self.connections_opened = 0
        self.requests_sent = 0

    def tls(self) -> ssl.SSLContext:
        """The system's trust store, hostnames checked (as apt and dnf do)."""
        if self._tls is None:
            ctx = ssl.create_default_context(cafile=self._ca_certs)
            ctx.set_alpn_protocols(["http/1.1"])
            self._tls = ctx
        return self._tls

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def get(self, url: str, route: _Route, read_timeout: float, deadline: float) -> _Response:
        try:
            return await self._get(url, route, read_timeout, deadline)
        except (FetchError, TimeoutError):
            raise
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError) as e:  # nothing else escapes as is
            raise FetchError(f"request to {_host(url)} failed: {_short(e)}") from None

    async def _get(self, url: str, route: _Route, read_timeout: float, deadline: float) -> _Response:
        conn = self._take(route.key)
        if conn is not None:
            try:
                return await self._exchange(conn, url, route, read_timeout, deadline)
            except _Refused:
                pass  # the server had closed that idle connection: once more, on a new one
        conn = await self._open(route)
        return await self._exchange(conn, url, route, read_timeout, deadline)

    def _take(self, key: tuple) -> _Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple, conn: _Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) < MAX_IDLE and conn.usable():
            conns.append(conn)
        else:
            conn.close()

    async def _resolve(self, host: str, port: int) -> list[tuple]:
        """Addresses of *host*, looked up once per Transport (concurrent callers share the lookup)."""
        key = (host, port)
        found = self._addresses.get(key)
        if found is not None:
            return found
        try:
            ipaddress.ip_address(host)
            found = [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
            self._addresses[key] = found
            return found
        except ValueError:
            pass
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.wrap_future(self._blocking.submit(
                socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM))
            lookup.add_done_callback(lambda f: (self._lookups.pop(key, None), f.cancelled() or f.exception()))
        try:
            infos = await asyncio.shield(lookup)
        except socket.gaierror as e:
            raise FetchError(f"cannot connect to {host}: {e.strerror or e}") from None
        except OSError as e:
            raise FetchError(f"cannot resolve {host}: {e.strerror or e}") from None
        found = self._addresses[key] = list(dict.fromkeys((info[0], info[4][0]) for info in infos))
        return found

    async def _open(self, route: _Route) -> _Conn:
        s = self.settings
        addresses = await self._resolve(route.host, route.port)
        last: BaseException | None = None
        conn = None
        # TLS on the connection itself: to an https:// proxy, or to the server
        # when no tunnel is needed; inside a tunnel it starts after CONNECT.
        tls_name = route.proxy_tls or (route.tls_host if not route.connect_to else None)
        for _family, address in addresses:
            try:
                async with asyncio.timeout(s.connect_timeout):
                    reader, writer = await asyncio.open_connection(
                        address, route.port, limit=MAX_HEAD_BYTES, ssl=self.tls() if tls_name else None,
                        server_hostname=tls_name)
                conn = _Conn(reader, writer)
                break
            except TimeoutError:
                last = _Timeout(f"connect to {route.host}:{route.port} timed out")
            except ssl.SSLError as e:
                raise FetchError(f"TLS with {route.host}:{route.port} failed: {_short(e)}") from None
            except OSError as e:
                last = FetchError(f"cannot connect to {route.host}:{route.port}: {e.strerror or _short(e)}")
        if conn is None:
            raise last or FetchError(f"cannot connect to {route.host}: no address")
        self.connections_opened += 1
        if route.connect_to:
            try:
                await self._tunnel(conn, route, s.read_timeout)
            except BaseException:
                conn.close()
                raise
        return conn

    async def _tunnel(self, conn: _Conn, route: _Route, read_timeout: float) -> None:
        """CONNECT through the proxy, then TLS with the rebuilder inside it."""
        conn.writer.write(f"CONNECT {route.connect_to} HTTP/1.1\r\nHost: {route.connect_to}\r\n".encode("ascii")
                          + route.extra + b"\r\n")
        async with asyncio.timeout(read_timeout):
            status, _headers, _old = await self._head(conn.reader, route.connect_to or "")
        if status != 200:
            raise FetchError(f"proxy refused {route.connect_to}: HTTP {status}")
        # Bytes the proxy sent after its answer and before the TLS handshake
        # would be read as the start of the rebuilder's (encrypted) answer.
        if _buffered(conn.reader):
            raise FetchError(f"proxy sent data for {route.connect_to} before the TLS handshake; refused")
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await conn.writer.start_tls(self.tls(), server_hostname=route.tls_host)
        except TimeoutError:
            raise _Timeout(f"TLS with {route.connect_to} timed out") from None
        except (ssl.SSLError, OSError, EOFError) as e:
            raise FetchError(f"TLS with {route.connect_to} failed: {_short(e)}") from None

    async def _exchange(self, conn: _Conn, url: str, route: _Route, read_timeout: float,
                        deadline: float) -> _Response:
        host = route.authority
        request = (f"GET {route.target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                   "Accept: */*\r\nAccept-Encoding: identity\r\n").encode("ascii") + (
                       route.extra if not route.connect_to else b"") + b"\r\n"
        try:
            conn.writer.write(request)
            self.requests_sent += 1
            loop = asyncio.get_running_loop()
            # One timer for the whole answer: it is moved on after every read
            # (read_timeout of silence) but never past the deadline.
            async with asyncio.timeout_at(min(deadline, loop.time() + read_timeout)) as timer:
                try:
                    status, headers, http10 = await self._head(conn.reader, host, timer, read_timeout, deadline)
                except _Refused:
                    if conn.reused:
                        raise
                    raise FetchError(f"{host} closed the connection without answering") from None
                body, reusable = await self._body(conn.reader, status, headers, http10, url, timer,
                                                  read_timeout, deadline)
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._give_back(route.key, conn)
        else:
            conn.close()
        return _Response(status, headers, body)

    async def _head(self, reader: asyncio.StreamReader, host: str, timer: Any = None,
                    read_timeout: float = 0.0, deadline: float = 0.0) -> tuple[int, _Headers, bool]:
        """Status, headers and whether it is HTTP/1.0 of the final answer (1xx answers skipped, bounded)."""
        for _ in range(MAX_INTERIM + 1):
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                raise FetchError(f"{host} sent an overlong status line") from None
            except (ConnectionError, OSError):
                raise _Refused(f"{host} closed the connection") from None
            if not line:
                raise _Refused(f"{host} closed the connection")
            m = _STATUS.fullmatch(line)
            if not m:
                raise FetchError(f"{host} did not answer in HTTP/1.x ({line[:40]!r})")
            status = int(m.group(2))
            headers: dict[str, list[str]] = {}
            count, size = 0, 0
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    raise FetchError(f"{host} sent an overlong header line") from None
                if not line.endswith(b"\n"):
                    raise FetchError(f"{host} closed the connection in the middle of its headers")
                count += 1
                size += len(line)
                if count > MAX_HEADERS or size > MAX_HEAD_BYTES:
                    raise FetchError(f"{host} sent more than {MAX_HEADERS} headers or {MAX_HEAD_BYTES} bytes of them")
                if line in (b"\r\n", b"\n"):
                    break
                h = _HEADER.fullmatch(line)
                if not h:
                    raise FetchError(f"{host} sent a malformed header line {line[:40]!r}")
                headers.setdefault(h.group(1).decode("ascii").lower(), []).append(
                    h.group(2).decode("latin-1").strip(" \t"))
            _move(timer, read_timeout, deadline)
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: the answer follows
            return status, _Headers(headers), m.group(1) == b"0"
        raise FetchError(f"{host} sent more than {MAX_INTERIM} interim (1xx) answers")

    async def _body(self, reader: asyncio.StreamReader, status: int, headers: _Headers, http10: bool, url: str,
                    timer: Any, read_timeout: float, deadline: float) -> tuple[bytes, bool]:
        """The body as framed by the headers, and whether the connection may be reused."""
        limit = self.settings.max_bytes
        keep = not http10 and "close" not in (headers.get("Connection") or "").lower()
        if status in (204, 304):
            return b"", keep
        encodings = headers.get_all("Transfer-Encoding")
        lengths = headers.get_all("Content-Length")
        if encodings:
            if [e.strip().lower() for e in ",".join(encodings).split(",")] != ["chunked"]:
                raise FetchError(f"{url} sent an unsupported transfer coding {','.join(encodings)[:40]!r}")
            if lengths:
                raise FetchError(f"{url} sent both Content-Length and chunked coding; refused")
            if status != 200:
                return b"", False  # an error page of unknown size: not worth reading
            return await self._chunked(reader, url, timer, read_timeout, deadline), keep
        if lengths:
            values = {v.strip() for v in ",".join(lengths).split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit() or len(next(iter(values))) > 15:
                raise FetchError(f"{url} sent a bad Content-Length {','.join(lengths)[:40]!r}")
            length = int(next(iter(values)))
            if status != 200:
                if length > DRAIN_LIMIT:
                    return b"", False
                limit = DRAIN_LIMIT
            elif length > limit:
                raise FetchError(f"{url} sends {length} bytes, more than max_bytes ({limit})")
            return await self._exactly(reader, length, url, timer, read_timeout, deadline), keep
        if status != 200:
            return b"", False
        return await self._until_close(reader, url, timer, read_timeout, deadline), False

    async def _exactly(self, reader: asyncio.StreamReader, length: int, url: str, timer: Any,
                       read_timeout: float, deadline: float) -> bytes:
        body = bytearray()
        await self._exactly_into(body, reader, length, url, timer, read_timeout, deadline)
        return bytes(body)

    async def _exactly_into(self, body: bytearray, reader: asyncio.StreamReader, length: int, url: str,
                            timer: Any, read_timeout: float, deadline: float) -> None:
        """Append exactly *length* bytes to *body* (one buffer, whatever the
        segment sizes: a body in a million tiny pieces costs no more memory)."""
        size = 0
        while size < length:
            chunk = await self._read(reader, min(length - size, 65536), url)
            if not chunk:
                raise FetchError(f"{url} closed the connection after {size} of {length} bytes")
            _move(timer, read_timeout, deadline)
            body += chunk
            size += len(chunk)

    async def _until_close(self, reader: asyncio.StreamReader, url: str, timer: Any, read_timeout: float,
                           deadline: float) -> bytes:
        body = bytearray()
        while chunk := await self._read(reader, 65536, url):
            if len(body) + len(chunk) > self.settings.max_bytes:
                raise FetchError(f"{url} sent more than max_bytes ({self.settings.max_bytes})")
            _move(timer, read_timeout, deadline)
            body += chunk
        return bytes(body)

    async def _chunked(self, reader: asyncio.StreamReader, url: str, timer: Any, read_timeout: float,
                       deadline: float) -> bytes:
        body = bytearray()
        while True:
            line = await self._line(reader, url)
            m = _CHUNK_SIZE.fullmatch(line)
            if not m:
                raise FetchError(f"{url} sent a malformed chunk header {line[:40]!r}")
            n = int(m.group(1), 16)
            if n == 0:
                break
            if len(body) + n > self.settings.max_bytes:
                raise FetchError(f"{url} sent more than max_bytes ({self.settings.max_bytes})")
            await self._exactly_into(body, reader, n, url, timer, read_timeout, deadline)
            if await self._line(reader, url) not in (b"\r\n", b"\n"):
                raise FetchError(f"{url} sent a chunk longer than it announced")
        for _ in range(MAX_HEADERS + 1):  # trailers, ignored
            line = await self._line(reader, url)
            _move(timer, read_timeout, deadline)
            if line in (b"\r\n", b"\n"):
                return bytes(body)
        raise FetchError(f"{url} sent more than {MAX_HEADERS} trailer lines")

    @staticmethod
    async def _read(reader: asyncio.StreamReader, n: int, url: str) -> bytes:
        try:
            return await reader.read(n)
        except (ConnectionError, OSError) as e:
            raise FetchError(f"reading {url} failed: {_short(e)}") from None

    @staticmethod
    async def _line(reader: asyncio.StreamReader, url: str) -> bytes:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise FetchError(f"{url} sent an overlong line in its body framing") from None
        except (ConnectionError, OSError) as e:
            raise FetchError(f"reading {url} failed: {_short(e)}") from None
        if not line.endswith(b"\n"):
            raise FetchError(f"{url} closed the connection in the middle of its body")
        return line


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


def _buffered(reader: asyncio.StreamReader) -> int:
    """Bytes received and not yet read.  StreamReader has no public call for
    it; its buffer has been ``_buffer`` (a bytearray) since asyncio began."""
    return len(getattr(reader, "_buffer", b""))


def _move(timer: Any, read_timeout: float, deadline: float) -> None:
    """Data arrived: allow another read_timeout of silence, never past the deadline.

    The timer is moved only when that gains more than a tenth of a second:
    most answers arrive in one piece, and re-arming it on every read was a
    quarter of the client's CPU.
    """
    if timer is None:
        return
    wanted = min(deadline, asyncio.get_running_loop().time() + read_timeout)
    when = timer.when()
    if when is None or wanted - when > 0.1:
        timer.reschedule(wanted)


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
                 cache: DocumentCache | None = None) -> None:
        self.settings = settings
        self.cache = cache
        # The policy's [fetch] proxy wins over everything; else the package
        # manager's choice per URL (apt's per-host settings, DIRECT and
        # Proxy-Auto-Detect; dnf's proxy=), else the environment.
        self.proxies = ProxyChoice.single(settings.proxy) if settings.proxy else ProxyChoice.of(proxy)
        self._proxy_lookups: dict[str, asyncio.Future[Any]] = {}
        self._io = _EventLoop("rbg-io")
        self._blocking = DaemonPool(max(4, min(settings.max_workers, 16)), "rbg-blocking")
        self.http = _HttpClient(settings, _ca_bundle(), self._blocking)
        self._slots: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._done: OrderedDict[str, bytes | None] = OrderedDict()  # None: missing (404)
        self._done_bytes = 0
        self.budgets = Budgets(settings.deadline)
        self._active: dict[str, set[asyncio.Task[Any]]] = {}  # requests in flight, by origin
        self._abandoned: set[asyncio.Task[Any]] = set()  # cancelled because their origin was tripped
        self._cache_writer = DaemonPool(1, "rbg-cache")  # writes never queue ahead of reads
        self._from_cache: set[str] = set()  # URLs whose answer in this run came from the disk cache
        self._cache_off = False
        self._cache_batch: list[tuple[str, asyncio.Future[bytes | None]]] = []  # reads not yet handed out

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
                raise _Timeout(f"no answer within the deadline from {url}") from None
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
                              FetchError(f"no answer from {_host(url)} within another package's deadline"))
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
        return _host(url)

    def charge_check(self, account: str, cpu: float) -> None:
        """A document charged to *account* (an :class:`EvidenceSource`'s
        ``check_account``) gave no vote after *cpu* seconds of checking (on the
        loop); once the account is overdrawn its documents are not checked."""
        self.budgets.failed_check(account, cpu)

    def came_from_cache(self, url: str) -> bool:
        """Whether this run's answer for *url* was read from the on-disk cache."""
        return url in self._from_cache

    async def _fetch(self, url: str, deadline: float, root: str | None, use_cache: bool, fresh: bool) -> bytes:
        origin = self.origin(url, root)
        if url.startswith("file://"):
            return await self._metered(origin, self._blocking_call, self._read_file, url, root, deadline)
        if self.settings.offline:
            raise FetchError(f"not fetching {_host(url)}: [fetch] offline = true (no network request is made)")
        cache = self.cache if use_cache and not self._cache_off else None
        if cache and not fresh:
            cached = await self._cache_get(cache, url, deadline)
            if cached is not None:
                self._from_cache.add(url)
                return cached
        body = await self._metered(origin, self._http, url, deadline)
        if cache:
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
        except _Timeout as e:
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
            raise _Timeout(f"reading {url[len('file://'):]} took longer than the deadline") from None

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

    async def _http(self, url: str, deadline: float) -> bytes:
        s = self.settings
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if deadline - time.monotonic() <= 0:
                raise _Timeout(f"deadline of {s.deadline:g}s passed before {current} answered")
            proxy = await self._proxy(current, deadline)
            route = _route(current, proxy)
            try:
                async with asyncio.timeout_at(deadline):
                    resp = await self.http.get(current, route, s.read_timeout, deadline)
            except TimeoutError:
                if time.monotonic() >= deadline - 0.01:
                    raise _Timeout(f"{_host(current)} did not answer within the deadline of {s.deadline:g}s") from None
                raise _Timeout(f"{_host(current)} did not answer within {s.read_timeout:g}s") from None
            if resp.status in (301, 302, 303, 307, 308):
                target = urljoin(current, resp.headers.get("Location", ""))
                a, b = urlsplit(current), urlsplit(target)
                if (a.scheme, a.netloc) != (b.scheme, b.netloc):
                    raise FetchError(f"{_host(current)} redirects to another host or scheme ({target[:80]}); refused")
                current = target
                continue
            if resp.status in (404, 410):
                raise EvidenceMissing(f"no evidence at {current} (HTTP {resp.status})")
            if proxy and resp.status == 407:
                raise FetchError(f"proxy refused {current}: HTTP 407 (proxy authentication required)")
            if resp.status != 200:
                raise FetchError(f"{current} answered HTTP {resp.status}")
            encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise FetchError(f"{current} sent a {encoding[:20]}-encoded body though none was asked for")
            return resp.body
        raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times")


def _ca_bundle() -> str | None:
    """The system's trust store, as apt and dnf use it, unless the environment names one."""
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        if os.environ.get(var):
            return os.environ[var]
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if os.path.exists(path):
            return path
    return None  # OpenSSL's default store


def _host(url: str) -> str:
    """Host and port of *url* for messages: never its credentials."""
    netloc = urlsplit(url).netloc
    return netloc.rsplit("@", 1)[-1] if netloc else url.split("@")[-1][:60]


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.strip("()'\" ")[:160]


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
            raise EvidenceMissing(f"{_host(rb.url)} has no rebuild of {artifact.label}")
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

