"""A small forward HTTP proxy of our own, on 127.0.0.1, for tests.

It forwards absolute-form requests (``GET http://host/path``) and opens
``CONNECT host:port`` tunnels, as an updates proxy does, and logs both.
Its *hosts* map resolves made-up names (``rb0.rebuilders.test``) to local
ports; nothing else resolves them, so a server behind such a name is
reachable only through the proxy (a direct fetch fails on name resolution).
Names not in the map are refused (502), never looked up: the tests never
reach the internet through it.

Requests are forwarded one per upstream connection (``Connection: close``
upstream), and answers are relayed as they come until the upstream closes.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from typing import Mapping
from urllib.parse import urlsplit

from tests.support.server import end_connections

_MAX_HEAD = 64 * 1024


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256
    owner: "ForwardProxy"

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """Clients and servers that leave early are normal here."""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        conn: socket.socket = self.request
        conn.settimeout(30)
        owner._track(conn)
        try:
            buf = b""
            while True:
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if not sep:
                    if len(buf) > _MAX_HEAD:
                        return
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    continue
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = (lines[0].split(" ") + ["", ""])[:3]
                headers = lines[1:]
                if method == "CONNECT":
                    owner._record(f"CONNECT {target}")
                    self._tunnel(conn, target, rest)
                    return
                owner._record(f"{method} {target}")
                length = 0
                for line in headers:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip() or 0)
                while len(rest) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                body, buf = rest[:length], rest[length:]
                if not self._forward(conn, method, target, headers, body):
                    return
        except OSError:
            return
        finally:
            owner._untrack(conn)

    def _upstream(self, host: str, port: int) -> socket.socket | None:
        address = self.server.owner.resolve(host, port)
        if address is None:
            return None
        try:
            return socket.create_connection(address, timeout=10)
        except OSError:
            return None

    def _forward(self, conn: socket.socket, method: str, target: str, headers: list[str], body: bytes) -> bool:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return False
        up = self._upstream(parts.hostname, parts.port or 80)
        if up is None:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [h for h in headers if h.partition(":")[0].strip().lower()
                not in ("connection", "proxy-connection", "keep-alive", "proxy-authorization")]
        request = f"{method} {origin} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in kept) + "Connection: close\r\n\r\n"
        with up:
            up.sendall(request.encode("latin-1") + body)
            # The answer is relayed until the upstream closes; the client's
            # connection closes with it (no re-framing here).
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    return False
                conn.sendall(chunk)

    def _tunnel(self, conn: socket.socket, target: str, early: bytes) -> None:
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        up = self._upstream(host, int(port)) if port.isdigit() else None
        if up is None:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with up:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if early:
                up.sendall(early)
            owner = self.server.owner
            socks = [conn, up]
            while not owner.stopping:
                readable, _, _ = select.select(socks, [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is conn else conn).sendall(data)


class ForwardProxy:
    """A forward proxy on 127.0.0.1: absolute-form GETs and CONNECT tunnels, logged.

    ``hosts`` maps a name (any case) to a ``(host, port)`` (or a port on
    127.0.0.1) and may be changed while it runs; ``log`` lists
    ``"GET http://..."`` and ``"CONNECT host:port"`` lines in arrival order.
    """

    def __init__(self, hosts: Mapping[str, "int | tuple[str, int]"] | None = None) -> None:
        self.hosts: dict[str, tuple[str, int]] = {}
        for name, where in (hosts or {}).items():
            self.map(name, where)
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def map(self, name: str, where: "int | tuple[str, int]") -> None:
        """Resolve *name* to *where* (a port on 127.0.0.1, or a host and port)."""
        self.hosts[name.lower()] = ("127.0.0.1", where) if isinstance(where, int) else where

    def resolve(self, host: str, port: int) -> tuple[str, int] | None:
        """Where a request for *host*:*port* goes: mapped names (the URL's port is ignored
        for them), 127.0.0.1 itself, nothing else."""
        mapped = self.hosts.get(host.lower())
        if mapped is not None:
            return mapped
        if host == "127.0.0.1":
            return (host, port)
        return None

    def start(self) -> "ForwardProxy":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"ForwardProxy:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        end_connections(conns)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None

    def __enter__(self) -> "ForwardProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def requests(self) -> list[str]:
        """A copy of the log."""
        with self._lock:
            return list(self.log)

    def _record(self, line: str) -> None:
        with self._lock:
            self.log.append(line)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
