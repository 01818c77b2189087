"""HTTP/1.1 pipelining in rebuildgate.http: answers in order, to the request that asked.

A raw server on 127.0.0.1 answers each request with a body naming its path,
and can end connections the ways real servers and middleboxes do.  With
``MAX_CONNECTIONS`` at 1 every request after the first is pipelined.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import replace

import pytest

from rebuildgate import http
from rebuildgate.errors import FetchError
from rebuildgate.fetch import Transport
from rebuildgate.http import plan_route
from rebuildgate.policy import FetchSettings
from tests.support.proxy import ForwardProxy

SETTINGS = FetchSettings(connect_timeout=2.0, read_timeout=2.0, deadline=5.0, max_bytes=64 * 1024,
                         max_workers=256)


class Tally:
    """Requests read and not yet answered (or dropped), now and at most, by one or more servers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.now -= 1


class RawServer:
    """Answers ``GET /name`` with ``body of /name`` in order, per connection.

    ``close_after``: after that many answers on a connection, say
    ``Connection: close`` and close it (requests read beyond are dropped);
    ``drop_after``: close it abruptly after that many, saying nothing;
    ``slow``: seconds to wait before answering a path (``delay`` for the others);
    ``busy``: the requests it is working on (shared, to count several servers together);
    ``hold_first``: seconds to wait, before the first answer on a connection, for a
    second request on it (so that a client that pipelines is seen doing so whatever
    the machine's load).
    """

    def __init__(self, close_after: int = 0, drop_after: int = 0, slow: dict[str, float] | None = None,
                 delay: float = 0.0, busy: Tally | None = None, hold_first: float = 0.0) -> None:
        self.close_after, self.drop_after, self.slow, self.delay = close_after, drop_after, slow or {}, delay
        self.hold_first = hold_first
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        self.connections = 0
        self.busy = busy or Tally()
        self.answered: list[str] = []
        self.pipelined = 0  # requests that arrived before the answer to the one ahead was sent
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf, count = b"", 0
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                if self.hold_first and not count and not buf:
                    conn.settimeout(self.hold_first)
                    try:
                        buf += conn.recv(65536)
                    except TimeoutError:
                        pass
                    conn.settimeout(None)
                with self.lock:
                    self.pipelined += bool(buf)
                with self.busy:
                    time.sleep(self.slow.get(path, self.delay))
                    count += 1
                    if self.drop_after and count > self.drop_after:
                        return
                body = f"body of {path}".encode()
                closing = bool(self.close_after and count >= self.close_after) or b"connection: close" in head.lower()
                with self.lock:
                    self.answered.append(path)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                    len(body), b"Connection: close\r\n" if closing else b"", body))
                if closing:
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def one_connection_first(monkeypatch):
    """Pipeline from the second request on (one connection before requests share it)."""
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 1)


def get_all(t: Transport, urls: list[str], deadline: float = 5.0) -> list[bytes | Exception]:
    async def all_of_them():
        return await asyncio.gather(*(t.http.get(url, time.monotonic() + deadline) for url in urls),
                                    return_exceptions=True)
    return t.wait(all_of_them(), time.monotonic() + deadline)


def test_pipelined_requests_each_get_their_own_answer_on_few_connections() -> None:
    server = RawServer(hold_first=2.0)
    t = Transport(SETTINGS)
    try:
        urls = [f"{server.url}/doc{i}" for i in range(200)]
        bodies = get_all(t, urls)
        assert bodies == [f"body of /doc{i}".encode() for i in range(200)]
        assert t.http.connections_opened == http.MAX_CONNECTIONS == server.connections
        assert server.pipelined > 0 and len(server.answered) == 200
    finally:
        t.close()
        server.close()


@pytest.mark.parametrize("how", ["close_after", "drop_after"])
def test_a_server_that_ends_connections_gets_each_request_once_more_unpipelined(how) -> None:
    """Requests queued behind an answer that closes the connection (saying so or
    not) are sent again, once, each on its own connection; the route is not
    pipelined again, and at most MAX_CONNECTIONS requests are in flight to it at once."""
    server = RawServer(**{how: 1}, delay=0.02)
    t = Transport(SETTINGS)
    try:
        urls = [f"{server.url}/doc{i}" for i in range(100)]
        assert get_all(t, urls) == [f"body of /doc{i}".encode() for i in range(100)]
        assert sorted(server.answered) == sorted(f"/doc{i}" for i in range(100))  # each answered once
        assert http.MAX_CONNECTIONS // 2 <= server.busy.most <= http.MAX_CONNECTIONS
        route = plan_route(urls[0], None)
        assert not t.http._pipelines(route)
    finally:
        t.close()
        server.close()


def test_a_request_that_times_out_behind_a_slow_answer_never_takes_another_ones_body(one_connection_first) -> None:
    """/b waits behind the slow /slow on one connection and runs out of time; /slow
    still gets its own body, /d (queued behind /b) is sent again on a
    connection of its own, and the first connection is not used again, so no
    later request can read the answer meant for /b or /d."""
    server = RawServer(slow={"/slow": 1.0})
    t = Transport(SETTINGS)
    try:
        async def scenario():
            slow = asyncio.ensure_future(t.http.get(f"{server.url}/slow", time.monotonic() + 5))
            await asyncio.sleep(0.1)
            behind = asyncio.ensure_future(t.http.get(f"{server.url}/b", time.monotonic() + 0.3))
            last = asyncio.ensure_future(t.http.get(f"{server.url}/d", time.monotonic() + 5))
            got_b = await asyncio.gather(behind, return_exceptions=True)
            got_d = await last
            got_slow = await slow
            later = await t.http.get(f"{server.url}/c", time.monotonic() + 5)
            return got_b[0], got_d, got_slow, later
        b, d, slow, later = t.wait(scenario(), time.monotonic() + 6)
        assert isinstance(b, FetchError) and "did not answer" in str(b)
        assert d == b"body of /d" and slow == b"body of /slow" and later == b"body of /c"
        assert t.http.connections_opened == 2
        assert t.http._pipelines(plan_route(f"{server.url}/c", None))  # our own timeout, not the server's refusal
    finally:
        t.close()
        server.close()


def test_requests_through_an_http_proxy_are_never_pipelined(monkeypatch) -> None:
    """An http proxy gets absolute-form requests, one at a time per connection;
    a CONNECT tunnel (end to end with the rebuilder) may carry pipelined ones."""
    t = Transport(SETTINGS)
    try:
        assert not t.http._pipelines(plan_route("http://rebuilder.example/doc", "http://proxy.example:3128"))
        assert t.http._pipelines(plan_route("https://rebuilder.example/doc", "http://proxy.example:3128"))
        assert t.http._pipelines(plan_route("http://rebuilder.example/doc", None))
    finally:
        t.close()


def test_through_an_http_proxy_each_rebuilder_host_has_connections_of_its_own() -> None:
    """The idle connections to an http proxy serve any host, but the cap on
    connections in use is per rebuilder host: two hosts behind one proxy
    together get more than one host's share."""
    both = Tally()
    a, b = RawServer(delay=0.05, busy=both), RawServer(delay=0.05, busy=both)
    with ForwardProxy({"rb-a.test": int(a.url.rsplit(":", 1)[1]), "rb-b.test": int(b.url.rsplit(":", 1)[1])}) as proxy:
        t = Transport(replace(SETTINGS, proxy=proxy.url))
        try:
            urls = [f"http://rb-{host}.test/doc{i}" for host in "ab" for i in range(60)]
            assert get_all(t, urls, deadline=10.0) == [f"body of /doc{i}".encode() for _ in "ab" for i in range(60)]
            assert http.MAX_CONNECTIONS < both.most <= 2 * http.MAX_CONNECTIONS
        finally:
            t.close()
            a.close()
            b.close()
