"""The fetcher's HTTP/1.1 client against servers that speak it oddly or wrongly.

Each answer here is either read exactly as HTTP/1.1 frames it, or refused
with a FetchError: never a body cut or extended at the wrong place, never a
hang (the deadline tests are in test_rebuilders.py and common/test_fetch.py).
"""

from __future__ import annotations

import base64
import socket
import threading
import time

import pytest

from rebuildgate.errors import EvidenceMissing, FetchError
from rebuildgate.fetch import Transport
from rebuildgate.policy import FetchSettings

from .helpers import canned

SETTINGS = FetchSettings(connect_timeout=1.0, read_timeout=1.0, deadline=2.0, max_bytes=4096, cache_dir=None)


def get(url: str, proxy: str | None = None) -> bytes:
    t = Transport(SETTINGS, proxy)
    try:
        return t.get(url, time.monotonic() + SETTINGS.deadline)
    finally:
        t.close()


def answer(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("raw,body", [
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n4;ext=1\nlink\n3\n ok\n0\nX-Trailer: t\n\n", b"link ok"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: Chunked\n\n7\nlink ok\n0\n\n", b"link ok"),
    (b"HTTP/1.0 200 OK\n\nread until the server closes", b"read until the server closes"),
    (b"HTTP/1.1 200 OK\nContent-Length: 7, 7\n\nlink ok", b"link ok"),
    (b"HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </x>\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok", b"ok"),
    (b"HTTP/1.1 200\ncontent-length:2\n\nok", b"ok"),
])
def test_well_framed_bodies_are_read_exactly(raw_server, raw, body) -> None:
    server = raw_server(canned(answer(raw)))
    assert get(f"{server.url}/doc") == body


@pytest.mark.parametrize("raw,words", [
    (b"HTTP/1.1 200 OK\nContent-Length: 2\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n", "both Content-Length and chunked"),
    (b"HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: 3\n\nok", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\nContent-Length: -1\n\nok", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n", "unsupported transfer coding"),
    (b"HTTP/1.1 200 OK\nContent-Length: 10\n\nshort", "closed the connection after 5 of 10 bytes"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nzz\nok\n0\n\n", "malformed chunk header"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nokay\n0\n\n", "longer than it announced"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n", "in the middle of its body"),
    (b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\nfffffff\n", "max_bytes"),
    (b"HTTP/1.1 200 OK\nContent-Length: 99999\n\n", "max_bytes"),
    (b"HTTP/1.0 200 OK\n\n" + b"x" * 5000, "max_bytes"),
    (b"ICY 200 OK\n\nstream", "did not answer in HTTP/1.x"),
    (b"HTTP/2 200\n\n", "did not answer in HTTP/1.x"),
    (b"HTTP/1.1 200 OK\nBad Header: x\n\nok", "malformed header line"),
    (b"HTTP/1.1 200 OK\nX-A: 1\n folded: continuation\n\nok", "malformed header line"),
    (b"HTTP/1.1 200 OK\n" + b"X-H: 1\n" * 101 + b"\n", "more than 100 headers"),
    (b"HTTP/1.1 200 OK\nX-Long: " + b"a" * 70000 + b"\n\n", "overlong header line"),
    (b"HTTP/1.1 200 OK\nContent-Le", "in the middle of its headers"),
    (b"", "closed the connection without answering"),
    (b"HTTP/1.1 100 Continue\n\n" * 9 + b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", "interim (1xx)"),
])
def test_broken_framing_is_refused(raw_server, raw, words) -> None:
    server = raw_server(canned(answer(raw) if b"\n" in raw[:200] else raw))
    with pytest.raises(FetchError) as e:
        get(f"{server.url}/doc")
    assert not isinstance(e.value, EvidenceMissing)
    assert words in str(e.value)


def test_small_error_pages_are_read_and_the_connection_kept(raw_server) -> None:
    """A 404 with a body, then a 200 on the same connection: one connection, two answers."""
    def two_answers(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(answer(b"HTTP/1.1 404 Not Found\nContent-Length: 9\n\nnot here!"))
        request = conn.recv(65536)
        assert request.startswith(b"GET /second ")
        conn.sendall(answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"))
        stopping.wait(2)

    server = raw_server(two_answers)
    t = Transport(SETTINGS)
    try:
        with pytest.raises(EvidenceMissing):
            t.get(f"{server.url}/first", time.monotonic() + 2)
        assert t.get(f"{server.url}/second", time.monotonic() + 2) == b"ok"
        assert t.http.connections_opened == 1
    finally:
        t.close()


def test_a_kept_alive_connection_the_server_closed_is_replaced(raw_server) -> None:
    """Servers close idle connections whenever they like: the next request
    goes out again on a new connection instead of failing."""
    server = raw_server(canned(answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")))  # then closes
    t = Transport(SETTINGS)
    try:
        assert t.get(f"{server.url}/a", time.monotonic() + 2) == b"ok"
        time.sleep(0.1)
        assert t.get(f"{server.url}/b", time.monotonic() + 2) == b"ok"
        assert server.requests == [b"GET /a HTTP/1.1", b"GET /b HTTP/1.1"]
    finally:
        t.close()


def test_connection_close_is_honoured(raw_server) -> None:
    server = raw_server(canned(answer(b"HTTP/1.1 200 OK\nConnection: close\nContent-Length: 2\n\nok")))
    t = Transport(SETTINGS)
    try:
        for path in ("/a", "/b"):
            assert t.get(f"{server.url}{path}", time.monotonic() + 2) == b"ok"
        assert t.http.connections_opened == 2
    finally:
        t.close()


def test_proxy_credentials_are_sent_to_the_proxy_only(raw_server) -> None:
    proxy = raw_server(canned(answer(b"HTTP/1.1 200 OK\nContent-Length: 9\n\nvia proxy")))
    port = proxy.url.rsplit(":", 1)[1]
    assert get("http://rebuilder.invalid/doc", proxy=f"http://us%65r:p%40ss@127.0.0.1:{port}") == b"via proxy"
    (head,) = proxy.heads
    assert head.startswith(b"GET http://rebuilder.invalid/doc HTTP/1.1\r\n")
    assert b"\r\nHost: rebuilder.invalid\r\n" in head
    assert b"\r\nProxy-Authorization: Basic " + base64.b64encode(b"user:p@ss") + b"\r\n" in head


def test_https_through_a_proxy_is_tunnelled_and_still_verified(raw_server) -> None:
    """CONNECT, then TLS with the rebuilder inside the tunnel: a tunnel that
    answers the TLS handshake with plain text is a TLS failure."""
    def plain_tunnel(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(answer(b"HTTP/1.1 200 Connection established\n\n"))
        conn.recv(65536)  # the ClientHello
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.shutdown(socket.SHUT_WR)

    proxy = raw_server(plain_tunnel)
    with pytest.raises(FetchError) as e:
        get("https://rebuilder.invalid/doc", proxy=proxy.url)
    assert "TLS with rebuilder.invalid:443 failed" in str(e.value)
    assert proxy.requests == [b"CONNECT rebuilder.invalid:443 HTTP/1.1"]


def test_a_proxy_cannot_slip_plain_bytes_in_before_tls(raw_server) -> None:
    """Bytes after the CONNECT answer and before the handshake would be read
    as the start of the rebuilder's answer, outside TLS."""
    proxy = raw_server(canned(answer(b"HTTP/1.1 200 Connection established\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok")))
    with pytest.raises(FetchError) as e:
        get("https://rebuilder.invalid/doc", proxy=proxy.url)
    assert "before the TLS handshake" in str(e.value)


def test_a_proxy_refusing_the_tunnel_is_named(raw_server) -> None:
    proxy = raw_server(canned(answer(b"HTTP/1.1 407 Proxy Authentication Required\nContent-Length: 0\n\n")))
    with pytest.raises(FetchError) as e:
        get("https://rebuilder.invalid/doc", proxy=proxy.url)
    assert "proxy refused rebuilder.invalid:443: HTTP 407" in str(e.value)


def test_credentials_in_a_rebuilder_url_are_refused_not_sent(raw_server) -> None:
    server = raw_server(canned(answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")))
    with pytest.raises(FetchError) as e:
        get(server.url.replace("http://", "http://user:secret@") + "/doc")
    assert "credentials" in str(e.value) and "secret" not in str(e.value)
    assert server.requests == []


def test_bytes_beyond_the_framed_body_never_answer_the_next_request(raw_server) -> None:
    """A server that sends more than it framed (a second, unasked-for answer)
    cannot have it read as the answer to the next request on that connection."""
    extra = answer(b"HTTP/1.1 200 OK\nContent-Length: 1\n\nA") + answer(b"HTTP/1.1 200 OK\nContent-Length: 8\n\nSMUGGLED")

    def overshoot(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(extra)
        stopping.wait(2)

    server = raw_server(overshoot)
    t = Transport(SETTINGS)
    try:
        assert t.get(f"{server.url}/a", time.monotonic() + 2) == b"A"
        time.sleep(0.05)
        assert t.get(f"{server.url}/b", time.monotonic() + 2) == b"A"  # asked again, on a new connection
        assert t.http.connections_opened == 2
    finally:
        t.close()


def test_a_body_in_tiny_chunks_is_read_whole(raw_server) -> None:
    body = bytes(range(256)) * 16  # 4096 bytes = max_bytes, one chunk per byte
    chunks = b"".join(b"1\r\n" + body[i:i + 1] + b"\r\n" for i in range(len(body)))
    server = raw_server(canned(answer(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n") + chunks + b"0\r\n\r\n"))
    assert get(f"{server.url}/doc") == body


def test_concurrent_first_requests_share_one_name_lookup(rebuilder_server, monkeypatch) -> None:
    import socket as socket_module

    server = rebuilder_server()
    for i in range(6):
        (server.root / f"d{i}").write_bytes(b"x")
    calls: list[str] = []
    real = socket_module.getaddrinfo

    def counting(host, *args, **kwargs):
        calls.append(host)
        time.sleep(0.1)  # a slow resolver: every request arrives while it runs
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket_module, "getaddrinfo", counting)
    url = server.url.replace("127.0.0.1", "localhost")
    t = Transport(SETTINGS)
    try:
        futures = [t.run(t.fetch(f"{url}/d{i}", time.monotonic() + 2)) for i in range(6)]
        assert [f.result(5) for f in futures] == [b"x"] * 6
        assert calls == ["localhost"]
    finally:
        t.close()
