"""A local HTTP server that plays a rebuilder (or a package repository), and
misbehaves on request.

rebuildgate talks to servers it does not control, from inside a package
manager that must never hang, so the tests need rebuilders that are slow,
silent, endless, huge, wrong or redirecting. Faults can be changed while the
server runs, for all paths (`server.fault`) or per path prefix
(`server.faults[prefix]`, longest prefix wins), and every request is logged.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import unquote, urlsplit

_JUNK = bytes(range(256)) * 256  # 64 KiB, reused: big bodies are generated
_QUIET_ERRORS = (ConnectionError, TimeoutError, ssl.SSLError)


@dataclass(frozen=True)
class Fault:
    """How the server answers. Build with the class methods."""

    kind: str = "ok"
    code: int = 200
    seconds: float = 0.0
    rate: float = 0.0  # bytes per second (trickle), pause between chunks (endless)
    size: int | None = None
    data: bytes = b""
    content_type: str = "application/octet-stream"
    location: str = ""

    @classmethod
    def ok(cls) -> Fault:
        """Serve the file under root (404 if there is none)."""
        return cls("ok")

    @classmethod
    def status(cls, code: int) -> Fault:
        """Answer `code` with a short text body instead of the file."""
        return cls("status", code=code)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait, then serve the file normally."""
        return cls("delay", seconds=seconds)

    @classmethod
    def hang(cls) -> Fault:
        """Read the request and never answer (until the server stops)."""
        return cls("hang")

    @classmethod
    def trickle(cls, bytes_per_second: float, total: int | None = None) -> Fault:
        """Send a body slowly, with a correct Content-Length: `total` bytes of
        junk, or the real file when `total` is None (a slow but honest
        rebuilder)."""
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        return cls("trickle", rate=bytes_per_second, size=total)

    @classmethod
    def oversized(cls, n_bytes: int) -> Fault:
        """A 200 with a correct Content-Length of `n_bytes` of junk, streamed."""
        return cls("oversized", size=n_bytes)

    @classmethod
    def endless(cls, pause: float = 0.0) -> Fault:
        """A chunked 200 whose body never ends (until the client leaves or the
        server stops); `pause` seconds between 64 KiB chunks."""
        return cls("endless", rate=pause)

    @classmethod
    def body(
        cls,
        data: bytes,
        content_type: str = "application/octet-stream",
        code: int = 200,
    ) -> Fault:
        """Answer with these bytes (garbage, malformed JSON, a canned API
        reply) instead of the file."""
        return cls("body", code=code, data=data, content_type=content_type)

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Fault:
        """Redirect to `location` (absolute URL or path)."""
        return cls("redirect", code=code, location=location)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # RebuilderServer.stop() unblocks and joins instead
    # socketserver's default backlog of 5 drops simultaneous connects, and
    # the kernel retries them a second later: a real server listens deeper.
    request_queue_size = 256
    owner: RebuilderServer

    def get_request(self):  # noqa: ANN201
        """With TLS, each connection's handshake runs on its own handler thread (see _Handler.setup)."""
        sock, address = super().get_request()
        if self.owner.tls is not None:
            sock = self.owner.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address) -> None:
        """Clients that leave early are normal here: no tracebacks for them."""
        exc = sys.exc_info()[1]
        if isinstance(exc, _QUIET_ERRORS) or self.owner.stopping:
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like real servers
    # Headers and body go out in separate writes; with Nagle on, the client's
    # delayed ACK would add ~40 ms to every answer and skew timing tests.
    disable_nagle_algorithm = True
    server_version = "rebuildgate-test"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        """Quiet: the request log is `RebuilderServer.requests`."""

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)  # a client that never says hello costs one thread for 10 s
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        self.server.owner._track(self.connection, threading.current_thread())

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except _QUIET_ERRORS:
            pass
        except OSError:
            if not self.server.owner.stopping:
                raise

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    # -- answers --------------------------------------------------------

    def _answer(self, head: bool) -> None:
        owner = self.server.owner
        owner._record(self.path)
        target = _target(self.path)
        fault = owner.fault_for(target)
        if not owner._sleep(owner.latency):
            return self._drop()
        if fault.kind == "hang":
            owner._stopping.wait()
            return self._drop()
        if fault.kind == "delay" and not owner._sleep(fault.seconds):
            return self._drop()

        if fault.kind == "status":
            body = b"" if fault.code in (204, 304) else f"fault: {fault.code}\n".encode()
            self._send(fault.code, body, "text/plain", head)
        elif fault.kind == "body":
            self._send(fault.code, fault.data, fault.content_type, head)
        elif fault.kind == "redirect":
            self._send(fault.code, b"", "text/plain", head, {"Location": fault.location})
        elif fault.kind == "oversized":
            self._start(200, fault.size or 0, "application/octet-stream")
            if not head:
                self._stream_junk(fault.size or 0)
        elif fault.kind == "endless":
            self._endless(fault.rate, head)
        elif fault.kind == "trickle":
            self._trickle(fault, target, head)
        else:
            self._serve_file(target, head)

    def _drop(self) -> None:
        self.close_connection = True

    def _start(
        self, code: int, length: int | None, content_type: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, code: int, body: bytes, content_type: str, head: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        self._start(code, len(body), content_type, extra)
        if not head:
            self.wfile.write(body)

    def _serve_file(self, target: str, head: bool) -> None:
        path = self.server.owner.resolve(target)
        if path is None:
            return self._send(404, b"not found\n", "text/plain", head)
        self._send(200, path.read_bytes(), _content_type(path), head)

    def _stream_junk(self, n: int) -> None:
        owner = self.server.owner
        while n > 0 and not owner.stopping:
            piece = _JUNK[: min(n, len(_JUNK))]
            self.wfile.write(piece)
            n -= len(piece)
        if n > 0:
            self._drop()

    def _endless(self, pause: float, head: bool) -> None:
        self._start(200, None, "application/octet-stream", {"Transfer-Encoding": "chunked"})
        if head:
            return
        owner = self.server.owner
        chunk = b"%x\r\n" % len(_JUNK) + _JUNK + b"\r\n"
        while owner._sleep(pause):
            self.wfile.write(chunk)
        self._drop()

    def _trickle(self, fault: Fault, target: str, head: bool) -> None:
        owner = self.server.owner
        if fault.size is None:
            path = owner.resolve(target)
            if path is None:
                return self._send(404, b"not found\n", "text/plain", head)
            body, content_type = path.read_bytes(), _content_type(path)
        else:
            body, content_type = _JUNK[: fault.size], "application/octet-stream"
            while len(body) < fault.size:  # only trickled bodies are this small
                body += _JUNK[: fault.size - len(body)]
        self._start(200, len(body), content_type)
        if head:
            return
        # ~20 writes a second, each as big as the rate allows.
        piece = max(1, int(fault.rate / 20))
        started = time.monotonic()
        for sent in range(0, len(body), piece):
            due = started + sent / fault.rate
            if not owner._sleep(due - time.monotonic()):
                return self._drop()
            self.wfile.write(body[sent : sent + piece])
            self.wfile.flush()


def end_connections(conns: Iterable[socket.socket], close: bool = False) -> None:
    """Shut every connection down both ways (a client blocked on it wakes up), and close it if asked."""
    for conn in conns:
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if close:
            conn.close()


def _target(raw: str) -> str:
    """Path and query of a request target: origin-form (`/a?b`) as is, the
    absolute form a client sends to a proxy (`http://host/a?b`) reduced to
    it."""
    if raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return raw.split("#", 1)[0]


def _content_type(path: Path) -> str:
    if path.suffix in (".link", ".json", ".layout") or path.name == "metadata":
        return "application/json"
    if path.suffix == ".xml":
        return "application/xml"
    return "application/octet-stream"


class RebuilderServer:
    """A threaded HTTP server on 127.0.0.1 serving files under `root`.

    Symlinks are followed only while they stay inside root (package-rebuilder
    trees are full of them); anything resolving outside is a 404. Use as a
    context manager or call `start()` / `stop()`. Requests in absolute form
    (as sent to a proxy) are answered too, so one instance can also stand in
    for an HTTP proxy: `requests` then shows the full URLs.
    """

    def __init__(self, root: Path, latency: float = 0.0, tls: ssl.SSLContext | None = None) -> None:
        self.root = Path(root).resolve()
        self.latency = latency
        self.tls = tls  # serve https with this context (tests.support.tls)
        self.fault: Fault = Fault.ok()
        self.faults: dict[str, Fault] = {}
        self.requests: list[str] = []  # raw request targets, in arrival order
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> RebuilderServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"RebuilderServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and end every open connection, hung ones included.
        Returns within about `timeout` seconds whatever clients do."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = dict(self._connections)
        end_connections(connections)
        deadline = time.monotonic() + timeout
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None
        self._thread = None

    def __enter__(self) -> RebuilderServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash: `http://127.0.0.1:PORT` (`https://` with TLS)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- behaviour ------------------------------------------------------------

    def fault_for(self, target: str) -> Fault:
        """The fault for a path (with query): longest matching prefix in
        `faults`, else `fault`."""
        faults = dict(self.faults)  # may be changed by the test thread
        matches = [p for p in faults if target.startswith(p)]
        if matches:
            return faults[max(matches, key=len)]
        return self.fault

    def resolve(self, target: str) -> Path | None:
        """The regular file under root a request path names, or None
        (missing, a directory, or outside root after resolving `..`,
        %-escapes and symlinks)."""
        rel = unquote(target.split("?", 1)[0]).lstrip("/")
        if "\0" in rel:
            return None
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    # -- bookkeeping used by the handler -------------------------------------

    def _record(self, raw_target: str) -> None:
        with self._lock:
            self.requests.append(raw_target)

    def _track(self, conn: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._connections[conn] = thread

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if still running."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()


def publish_package_rebuilder(
    root: Path,
    source: str,
    version: str,
    doc: bytes,
    keyid8: str = "abcd1234",
    arch: str | None = None,
    binaries: Sequence[str] = (),
    unreproducible: bool = False,
) -> Path:
    """Lay out a link as Qubes' package-rebuilder publishes it and return its
    path.

    Writes `{root}/sources/{source}/{version}/rebuild.{keyid8}.link` (the
    merged link) plus the `metadata` symlink to it, or, with `arch`, only the
    per-arch `rebuild.{keyid8}.{arch}.link`. `binaries` become symlinks
    `sources/{binary}` -> `{source}`; `unreproducible` puts it all under
    `unreproducible/`. `version` is used as given: for RPM pass
    "{version}-{release}"; whether a Debian epoch appears is the caller's
    choice.
    """
    base = Path(root) / ("unreproducible" if unreproducible else "") / "sources"
    directory = base / source / version
    directory.mkdir(parents=True, exist_ok=True)
    name = f"rebuild.{keyid8}.{arch}.link" if arch else f"rebuild.{keyid8}.link"
    path = directory / name
    path.write_bytes(doc)
    if arch is None:
        metadata = directory / "metadata"
        if metadata.is_symlink() or metadata.exists():
            metadata.unlink()
        metadata.symlink_to(name)
    for binary in binaries:
        link = base / binary
        if binary != source and not (link.is_symlink() or link.exists()):
            link.symlink_to(source)
    return path


class ServerSet:
    """Servers started on demand and stopped together.

    An instance is the ``server_factory`` that :func:`tests.support.rebuilders.make_rebuilders`
    takes: ``servers(root)`` starts a server over *root*; ``stop()`` stops them all.
    """

    def __init__(self) -> None:
        self.servers: list[RebuilderServer] = []

    def __call__(self, root: Path, latency: float = 0.0) -> RebuilderServer:
        server = RebuilderServer(root, latency=latency).start()
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
