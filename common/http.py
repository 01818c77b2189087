"""A small, strict HTTP/1.1 client on one asyncio event loop: the fetcher's only way onto the network.

An apt or dnf transaction asks for thousands of evidence documents at
once; on threads (requests and urllib3, one per request) the wake-ups and
GIL hand-offs cost about ten times the CPU of the requests themselves,
which on a small machine was most of rebuildgate's overhead
(bench/core_bench.py, bench/apt_bench.py; aiohttp, measured side by side,
cost 1.2-1.3x the wall time and 1.4-1.6x the CPU, httpx about 40x the CPU).
So :class:`HttpClient` is deliberately small and strict: kept-alive
connections per route, TLS verified against the system's trust store
(hostnames checked, as apt and dnf do), plain or CONNECT-tunnelled through
the package manager's proxy, at most 100 strictly formed header lines in
64 KiB, bodies framed by Content-Length, chunked coding or the end of the
connection and never larger than ``max_bytes``, compression refused, every
read bounded in size and time.

:meth:`HttpClient.get` is the whole interface the fetcher
(:class:`rebuildgate.fetch.Transport`) uses: a URL and a deadline in, the
body of a ``200 OK`` out, or an exception that costs that rebuilder its
vote.  Which proxy a URL takes is the caller's (``proxy_for``,
:mod:`rebuildgate.proxy`).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import unquote, urljoin, urlsplit

from .errors import EvidenceMissing, FetchError
from .policy import FetchSettings
from .pool import DaemonPool

class Fetcher(Protocol):
    """What the fetcher needs of an HTTP client (:class:`HttpClient`; tests use an in-memory fake)."""

    async def get(self, url: str, deadline: float) -> bytes:
        """The body of *url*'s ``200 OK`` by *deadline* (loop time of ``time.monotonic``); raises
        EvidenceMissing (404/410), RequestTimeout or FetchError."""
        ...

    def close(self) -> None:
        """Close idle connections (on the loop, when the fetcher closes)."""
        ...


#: Redirects followed for one document (same scheme and host only).
MAX_REDIRECTS = 3
USER_AGENT = "rebuildgate/0.1"

# --------------------------------------------------------------------------
# What is parsed here is bounded and strict: a status
# line, header lines (at most MAX_HEADERS of them in MAX_HEAD_BYTES, no
# obsolete folding), and a body framed by Content-Length, chunked transfer
# coding or the end of the connection; anything else is an error.  (The
# standard library's header parser goes through the email package, which
# cost more CPU than everything else in a request put together.)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_INTERIM = 8  # 1xx answers before the real one
MAX_IDLE = 64  # kept-alive connections per host
#: Connections in use to one server at most (32, as many as ever were with
#: max_workers 64).  Further requests are pipelined on them, at most
#: PIPELINE_DEPTH on one (HTTP/1.1 pipelining, as apt does towards mirrors:
#: Acquire::http::Pipeline-Depth), or wait for one where that is not done:
#: through an http proxy, or to a server that ended pipelined requests.
#: Pipelined requests are answered one after another, so a server that
#: takes time over each would answer them later than on connections of
#: their own: hence only beyond these.
MAX_CONNECTIONS = 32
PIPELINE_DEPTH = 16
DRAIN_LIMIT = 64 * 1024  # an error page this small is read so its connection can be reused
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n")
#: field-name ":" field-value; no obsolete line folding, no space before the colon.
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([^\r\n]*)\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")


class RequestTimeout(FetchError):
    """A rebuilder that did not answer in time (trips the per-host breaker)."""


class _Refused(FetchError):
    """A reused connection the server had closed: safe to retry once (GET)."""


class _Unanswered(_Refused):
    """A pipelined request the server ended its connection before answering
    (closing it, or saying ``Connection: close`` to a request ahead): retried
    once, and that server is not pipelined to again."""


class _Dropped(_Refused):
    """A pipelined request whose connection was ended here (a request ahead
    failed or ran out of time): retried once."""


class Headers:
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
class Response:
    status: int
    headers: Headers
    body: bytes


@dataclass
class Route:
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

    @property
    def lane(self) -> tuple:
        """What the connections in use are counted and pipelined by: the route,
        and through an http proxy (whose idle connections serve any host)
        the server asked as well."""
        return self.key + (self.authority,) if self.key[0] == "proxy" else self.key


class _Conn:
    """One connection; ``pending`` requests written and not yet fully read,
    answered in the order written: each waits for ``tail`` (the previous
    request's "answer read") before reading its own."""

    __slots__ = ("reader", "writer", "reused", "pending", "tail", "broken", "server_ended")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.pending = 0
        self.tail: asyncio.Future[None] | None = None
        self.broken = False  # no request may follow the ones in flight
        self.server_ended = False  # ... because the server ended the connection

    def usable(self) -> bool:
        """Open, and holding no bytes nobody asked for (they would be read as
        the next request's answer)."""
        return not self.reader.at_eof() and not self.writer.is_closing() and not _buffered(self.reader)

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def plan_route(url: str, proxy: str | None) -> Route:
    parts = urlsplit(url)
    scheme, host = parts.scheme, parts.hostname
    if scheme not in ("http", "https") or not host:
        raise FetchError(f"cannot fetch {url[:80]}: not an http(s) URL")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"cannot fetch {url[:80]}: bad port") from None
    if parts.username is not None:
        raise FetchError(f"cannot fetch from {host_of(url)}: credentials in a rebuilder URL are not supported")
    netloc = parts.netloc
    origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not proxy:
        return Route(("direct", scheme, host, port), netloc, host, port, host if scheme == "https" else None, None,
                      None, origin, b"")
    p = urlsplit(proxy)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise FetchError(f"proxy {host_of(proxy)!r} is not an http:// or https:// URL")
    extra = b""
    if p.username is not None:
        creds = f"{unquote(p.username)}:{unquote(p.password or '')}".encode("utf-8")
        extra = b"Proxy-Authorization: Basic " + base64.b64encode(creds) + b"\r\n"
    try:
        pport = p.port or (443 if p.scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"proxy {host_of(proxy)!r} has a bad port") from None
    proxy_tls = p.hostname if p.scheme == "https" else None
    if scheme == "https":  # a tunnel: the proxy sees only host:port
        return Route(("tunnel", proxy, host, port), netloc, p.hostname, pport, host, proxy_tls, f"{host}:{port}"
                      if ":" not in host else f"[{host}]:{port}", origin, extra)
    return Route(("proxy", proxy), netloc, p.hostname, pport, None, proxy_tls, None, f"http://{netloc}{origin}",
                  extra)


class HttpClient:
    """GETs with keep-alive pools, proxies and TLS, on one event loop.

    Every coroutine here runs on the Transport's loop; bounds are enforced by
    the caller's ``asyncio.timeout``.  Name resolution (a blocking call) runs
    on daemon threads, once per host and Transport.
    """

    def __init__(self, settings: FetchSettings, ca_certs: str | None, blocking: DaemonPool,
                 proxy_for: Callable[[str, float], Awaitable[str | None]]) -> None:
        self.settings = settings
        self._proxy_for = proxy_for  # (url, deadline) -> the proxy for it (None: direct)
        self._ca_certs = ca_certs
        self._tls: ssl.SSLContext | None = None
        self._blocking = blocking
        self._idle: dict[tuple, list[_Conn]] = {}
        self._busy: dict[tuple, list[_Conn]] = {}  # connections with requests in flight, by Route.lane
        self._unpipelined: set[tuple] = set()  # lanes whose server ended a connection with requests queued
        self._waiting: dict[tuple, list[asyncio.Future[None]]] = {}  # requests waiting for a connection, by lane
        self._opening: dict[tuple, int] = {}  # connections being opened, by lane
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

    async def get(self, url: str, deadline: float) -> bytes:
        """The fetcher interface: the body *url* answers with ``200 OK``, by *deadline*.

        At most ``max_bytes`` (the settings'), framed strictly; redirects
        followed within the same scheme and host only (at most
        :data:`MAX_REDIRECTS`); ``404``/``410`` raise
        :class:`~rebuildgate.errors.EvidenceMissing`, anything else that is
        not a ``200`` with an identity-coded body a
        :class:`~rebuildgate.errors.FetchError`, time running out
        :class:`RequestTimeout`.
        """
        s = self.settings
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if deadline - time.monotonic() <= 0:
                raise RequestTimeout(f"deadline of {s.deadline:g}s passed before {current} answered")
            proxy = await self._proxy_for(current, deadline)
            route = plan_route(current, proxy)
            try:
                async with asyncio.timeout_at(deadline):
                    resp = await self.request(current, route, s.read_timeout, deadline)
            except TimeoutError:
                if time.monotonic() >= deadline - 0.01:
                    raise RequestTimeout(f"{host_of(current)} did not answer within the deadline of {s.deadline:g}s") from None
                raise RequestTimeout(f"{host_of(current)} did not answer within {s.read_timeout:g}s") from None
            if resp.status in (301, 302, 303, 307, 308):
                target = urljoin(current, resp.headers.get("Location", ""))
                a, b = urlsplit(current), urlsplit(target)
                if (a.scheme, a.netloc) != (b.scheme, b.netloc):
                    raise FetchError(f"{host_of(current)} redirects to another host or scheme ({target[:80]}); refused")
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

    async def request(self, url: str, route: Route, read_timeout: float, deadline: float) -> Response:
        try:
            return await self._get(url, route, read_timeout, deadline)
        except (FetchError, TimeoutError):
            raise
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError) as e:  # nothing else escapes as is
            raise FetchError(f"request to {host_of(url)} failed: {short_error(e)}") from None

    async def _get(self, url: str, route: Route, read_timeout: float, deadline: float) -> Response:
        """One request: on an idle connection, pipelined on a busy one, or on a
        new one, never more than the route's connections in use at once.  A
        request whose connection ended before its answer (an idle one the
        server had closed, or a pipelined one) is sent once more, on a new
        connection."""
        key = route.lane
        retry = False
        while True:
            room = len(self._busy.get(key, ())) + self._opening.get(key, 0) < MAX_CONNECTIONS
            conn = None
            if not retry:
                conn = self._take(route.key) if room else self._join(route)
            if conn is None:
                if room:
                    break  # open one
                await self._wait_for_connection(key)
                continue
            try:
                return await self._exchange(conn, url, route, read_timeout, deadline)
            except _Unanswered:
                self._unpipelined.add(key)  # the server does not keep pipelined requests: not again
            except _Refused:
                pass  # the server had closed that idle connection, or a request ahead failed
            retry = True
        self._opening[key] = self._opening.get(key, 0) + 1
        try:
            conn = await self._open(route)
        finally:
            self._opening[key] -= 1
            if not self._opening[key]:
                del self._opening[key]
            self._wake(key, every=True)  # a connection to join (or room to open one)
        return await self._exchange(conn, url, route, read_timeout, deadline)

    def _pipelines(self, route: Route) -> bool:
        """Whether requests to *route* may be pipelined: not through an http proxy
        (absolute-form requests), nor to a server that ended a connection with
        pipelined requests unanswered."""
        return route.key[0] != "proxy" and route.lane not in self._unpipelined

    def _wake(self, key: tuple, every: bool = False) -> None:
        """Let one (or every) request waiting for a connection to *key* look again."""
        for waiter in self._waiting.get(key, ()):
            if not waiter.done():
                waiter.set_result(None)
                if not every:
                    return

    async def _wait_for_connection(self, key: tuple) -> None:
        """Until a connection to *key* has room (woken by :meth:`_wake`)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(waiter)
        try:
            await waiter
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[key]

    def _join(self, route: Route) -> _Conn | None:
        """A busy connection to pipeline the request on (the caller found
        MAX_CONNECTIONS in use), or None (wait): the least loaded of them with
        fewer than PIPELINE_DEPTH requests in flight, only where
        :meth:`_pipelines`.
        """
        if not self._pipelines(route):
            return None
        busy = [c for c in self._busy.get(route.lane, ()) if not c.broken and not c.writer.is_closing()]
        if not busy:
            return None  # all still being opened
        conn = min(busy, key=lambda c: c.pending)
        return conn if conn.pending < PIPELINE_DEPTH else None

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

    async def _open(self, route: Route) -> _Conn:
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
                last = RequestTimeout(f"connect to {route.host}:{route.port} timed out")
            except ssl.SSLError as e:
                raise FetchError(f"TLS with {route.host}:{route.port} failed: {short_error(e)}") from None
            except OSError as e:
                last = FetchError(f"cannot connect to {route.host}:{route.port}: {e.strerror or short_error(e)}")
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

    async def _tunnel(self, conn: _Conn, route: Route, read_timeout: float) -> None:
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
            raise RequestTimeout(f"TLS with {route.connect_to} timed out") from None
        except (ssl.SSLError, OSError, EOFError) as e:
            raise FetchError(f"TLS with {route.connect_to} failed: {short_error(e)}") from None

    async def _exchange(self, conn: _Conn, url: str, route: Route, read_timeout: float,
                        deadline: float) -> Response:
        """Send one request on *conn* and read its answer, after the answers of
        the requests written on it before (pipelining, see :meth:`_join`).

        Anything that goes wrong ends the connection (``broken``): the
        requests queued behind fail with :class:`_Unanswered` (the server
        ended it) or :class:`_Dropped` (a request ahead failed here) and are
        sent again, once, each on a connection of its own.  An answer is only
        ever read by the request whose turn it is, so no body can reach
        another request.
        """
        host = route.authority
        request = (f"GET {route.target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                   "Accept: */*\r\nAccept-Encoding: identity\r\n").encode("ascii") + (
                       route.extra if not route.connect_to else b"") + b"\r\n"
        loop = asyncio.get_running_loop()
        before, mine = conn.tail, loop.create_future()
        conn.tail = mine
        conn.pending += 1
        if conn.pending == 1:
            self._busy.setdefault(route.lane, []).append(conn)
        reading = before is None
        try:
            conn.writer.write(request)
            self.requests_sent += 1
            # One timer for the whole answer: it is moved on after every read
            # (read_timeout of silence) but never past the deadline.
            async with asyncio.timeout_at(min(deadline, loop.time() + read_timeout)) as timer:
                if before is not None:
                    await asyncio.shield(before)  # the answers before this one are read (or it ended)
                    reading = True
                    _move(timer, read_timeout, deadline)
                try:
                    status, headers, http10 = await self._head(conn.reader, host, timer, read_timeout, deadline)
                except _Refused:
                    conn.server_ended = True
                    if before is not None:
                        raise _Unanswered(f"{host} closed the connection before answering a pipelined request") from None
                    if conn.reused:
                        raise
                    raise FetchError(f"{host} closed the connection without answering") from None
                body, reusable = await self._body(conn.reader, status, headers, http10, url, timer,
                                                  read_timeout, deadline)
        except BaseException:
            # Nobody reads after this: the requests behind are told, those ahead
            # (if this one never got to read) still get their answers.
            conn.broken = True
            self._answered(route.lane, conn, mine)
            if reading or conn.pending == 0:
                conn.close()
            raise
        if not reusable:
            conn.broken = conn.server_ended = True
        self._answered(route.lane, conn, mine)
        if conn.pending == 0:
            if conn.broken:
                conn.close()
            else:
                self._give_back(route.key, conn)
        return Response(status, headers, body)

    def _answered(self, lane: tuple, conn: _Conn, mine: "asyncio.Future[None]") -> None:
        """This request is done with *conn*: the next one may read (or is told the connection ended)."""
        conn.pending -= 1
        if conn.pending == 0:
            conn.tail = None
            busy = self._busy.get(lane)
            if busy is not None and conn in busy:
                busy.remove(conn)
                if not busy:
                    del self._busy[lane]
        self._wake(lane)  # room on this connection, or one connection fewer in use
        if mine.done():
            return
        if conn.broken:
            why = _Unanswered if conn.server_ended else _Dropped
            mine.set_exception(why("the connection ended before this pipelined request was answered"))
            mine.exception()  # retrieved: nobody may be queued behind
        else:
            mine.set_result(None)

    async def _head(self, reader: asyncio.StreamReader, host: str, timer: Any = None,
                    read_timeout: float = 0.0, deadline: float = 0.0) -> tuple[int, Headers, bool]:
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
            return status, Headers(headers), m.group(1) == b"0"
        raise FetchError(f"{host} sent more than {MAX_INTERIM} interim (1xx) answers")

    async def _body(self, reader: asyncio.StreamReader, status: int, headers: Headers, http10: bool, url: str,
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
            raise FetchError(f"reading {url} failed: {short_error(e)}") from None

    @staticmethod
    async def _line(reader: asyncio.StreamReader, url: str) -> bytes:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            raise FetchError(f"{url} sent an overlong line in its body framing") from None
        except (ConnectionError, OSError) as e:
            raise FetchError(f"reading {url} failed: {short_error(e)}") from None
        if not line.endswith(b"\n"):
            raise FetchError(f"{url} closed the connection in the middle of its body")
        return line


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


def ca_bundle() -> str | None:
    """The system's trust store, as apt and dnf use it, unless the environment names one."""
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        if os.environ.get(var):
            return os.environ[var]
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if os.path.exists(path):
            return path
    return None  # OpenSSL's default store


def host_of(url: str) -> str:
    """Host and port of *url* for messages: never its credentials."""
    netloc = urlsplit(url).netloc
    return netloc.rsplit("@", 1)[-1] if netloc else url.split("@")[-1][:60]


def short_error(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.strip("()'\" ")[:160]
