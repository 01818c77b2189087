"""Small helpers for the hostile tests that the shared fixtures do not offer.

* :class:`RawServer` - a TCP server that speaks whatever bytes a test wants,
  for attacks the HTTP-level ``tests.support.server.RebuilderServer`` cannot
  express (headers sent one byte at a time, endless ``100 Continue``, a
  ``Content-Encoding`` header on a compressed body).
* :func:`cli` - the ``rebuildgate`` command in a subprocess with a timeout.
* :func:`fuzz_settings` - bounded hypothesis settings; the number of examples
  is raised by hand with ``REBUILDGATE_FUZZ_EXAMPLES=N`` and the examples are
  randomised across runs with ``REBUILDGATE_FUZZ_RANDOM=1`` (the default run
  is derandomised so that it is reproducible).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

from hypothesis import HealthCheck, settings

from tests.support.server import end_connections

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))

FUZZ_EXAMPLES = int(os.environ.get("REBUILDGATE_FUZZ_EXAMPLES", "0") or 0)
FUZZ_RANDOM = os.environ.get("REBUILDGATE_FUZZ_RANDOM", "") not in ("", "0")


def fuzz_settings(default_examples: int) -> settings:
    return settings(
        max_examples=FUZZ_EXAMPLES or default_examples,
        deadline=None,
        derandomize=not FUZZ_RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def cli(*args: str | bytes | os.PathLike, timeout: float = 60, env: dict | None = None,
        user: int | None = None) -> subprocess.CompletedProcess:
    """`python -m rebuildgate.cli ARGS` with bytes output (names may be invalid UTF-8)."""
    argv = [PYTHON, "-m", "rebuildgate.cli", *[a if isinstance(a, bytes) else str(a) for a in args]]
    kwargs = {}
    if user is not None:
        kwargs = {"user": user, "group": user, "extra_groups": []}
    return subprocess.run(argv, capture_output=True, timeout=timeout, cwd=REPO, env=env, **kwargs)


# ---------------------------------------------------------------------------
# A raw TCP "rebuilder"

Behaviour = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """Accepts connections on 127.0.0.1, reads the request head, then runs
    ``behaviour(conn, stopping)``; :meth:`stop` closes every connection so
    clients stuck on us are released."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []  # request lines
        self.heads: list[bytes] = []  # whole request heads
        self._stopping = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._thread = threading.Thread(target=self._accept, name="RawServer", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            with self._lock:
                self.requests.append(head.split(b"\r\n", 1)[0])
                self.heads.append(head)
            self.behaviour(conn, self._stopping)
        except OSError:
            pass

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        end_connections(conns, close=True)


def slow_headers(conn: socket.socket, stopping: threading.Event) -> None:
    """A status line, then one header byte every 0.2 s, forever: every single
    read is fast, so only an overall deadline ends it."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stopping.wait(0.2):
        conn.sendall(b"a")


def endless_continue(conn: socket.socket, stopping: threading.Event) -> None:
    """Interim `100 Continue` responses, as fast as the client takes them."""
    burst = b"HTTP/1.1 100 Continue\r\n\r\n" * 256
    while not stopping.is_set():
        conn.sendall(burst)


def canned(response: bytes) -> Behaviour:
    """Send *response* (status line, headers and body) and close."""
    def behaviour(conn: socket.socket, stopping: threading.Event) -> None:
        conn.sendall(response)
        conn.shutdown(socket.SHUT_WR)
    return behaviour


def kinds(verdict) -> dict[str, set[str]]:
    """What each non-voting rebuilder gave, by problem kind ("missing" included)."""
    out: dict[str, set[str]] = {}
    for name, problem in verdict.errors:
        out.setdefault(name, set()).add(problem.kind)
    for name in verdict.missing:
        out.setdefault(name, set()).add("missing")
    return out
