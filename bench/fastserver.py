"""A lean static HTTP server for benchmarks, one per rebuilder process.

The test suite's RebuilderServer (http.server, a thread per connection)
costs about a millisecond of CPU per request.  In a benchmark on a small
machine that CPU is taken from the client being measured, though a real
rebuilder is another machine.  This asyncio server answers GETs from a
directory (symlinks followed only inside it, bodies kept in memory) with
keep-alive, pipelining and an optional added network latency (each answer
leaves that long after its request arrived), at a fraction of that cost.

A server can also play a hostile rebuilder (:meth:`RemoteServers.hostile`):
answer every request just before the client's deadline (a latency of its
own), or answer every request with a maximum-size document carrying 8
bogus signatures, which costs the client CPU to check and never verifies.
"""

from __future__ import annotations

import asyncio
import json
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _State:
    latency = 0.0
    bogus: bytes | None = None  # served for every request, when set
    requests = 0  # answered so far


def bogus_document(size: int, signatures: int = 8) -> bytes:
    """A legacy metablock of at most *size* bytes that no key verifies.

    The signed payload is a link whose ``command`` is a long list of small
    numbers: the costliest shape to parse and canonicalize per byte.
    """
    def render(n: int) -> bytes:
        return json.dumps({"signed": {"_type": "link", "name": "rebuild", "command": [1] * n, "products": {}},
                           "signatures": [{"keyid": f"{i:064x}", "sig": "00" * 64} for i in range(signatures)]},
                          separators=(",", ":")).encode()
    return render(max(0, (size - len(render(0))) // 2))


def _body(root: Path, cache: dict[str, bytes | None], target: str) -> bytes | None:
    if target not in cache:
        path = (root / unquote(urlsplit(target).path).lstrip("/")).resolve()
        ok = path.is_file() and (path == root or root in path.parents)
        cache[target] = path.read_bytes() if ok else None
    return cache[target]


async def _serve(root: Path, conn: Connection, state: _State) -> None:
    cache: dict[str, bytes | None] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The latency is the network's: each answer leaves `latency` after its
        # request arrived, in the order asked.  Requests pipelined on one
        # connection (sent before the previous answer came) are each delayed
        # once, not once per request ahead of them; a client that waits for
        # every answer sees exactly one latency per request either way.
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while (item := await answers.get()) is not None:
                due, data = item
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                request = await reader.readline()
                if not request:
                    break
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                parts = request.split()
                state.requests += 1
                body = state.bogus
                if body is None and len(parts) >= 2:
                    body = _body(root, cache, parts[1].decode("latin-1"))
                if body is None:
                    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                else:
                    data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
                answers.put_nowait((loop.time() + state.latency, data))
            answers.put_nowait(None)
            await sender
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    conn.send(f"http://127.0.0.1:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def control() -> None:  # latency changes and stop, from the parent
        while True:
            try:
                command, value = conn.recv()
            except EOFError:
                command = "stop"
            if command == "stop":
                loop.call_soon_threadsafe(stop.set)
                return
            if command == "bogus":
                state.bogus = bogus_document(value) if value else None
            elif command == "requests":
                conn.send(state.requests)
                continue
            else:
                state.latency = value
            conn.send("ok")

    threading.Thread(target=control, daemon=True).start()
    async with server:
        await stop.wait()


def serve_forever(root: str, conn: Connection) -> None:
    """Child-process entry point: send the URL, then obey ("latency", s),
    ("bogus", size or 0), ("requests", None) (answers how many it served) and ("stop", None)."""
    asyncio.run(_serve(Path(root).resolve(), conn, _State()))


class RemoteServers:
    """One lean server process per root, as real rebuilders are other machines.

    ``urls`` in the order of *roots*; ``latency(s)`` sets the added latency of
    all of them; ``close()`` stops them.
    """

    def __init__(self, roots: list[Path]) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._conns, self._procs, self.urls = [], [], []
        for root in roots:
            conn, child = ctx.Pipe()
            proc = ctx.Process(target=serve_forever, args=(str(root), child), daemon=True)
            proc.start()
            if not conn.poll(30):
                raise RuntimeError(f"server for {root} did not start")
            self.urls.append(conn.recv())
            self._conns.append(conn)
            self._procs.append(proc)

    def latency(self, seconds: float) -> None:
        for conn in self._conns:
            conn.send(("latency", seconds))
            conn.recv()

    def hostile(self, index: int, latency: float | None = None, bogus: int = 0) -> None:
        """Make server *index* hostile: its own *latency* (e.g. just under the
        client's deadline), and/or *bogus* documents of that many bytes for
        every request (0: its real files again)."""
        conn = self._conns[index]
        if latency is not None:
            conn.send(("latency", latency))
            conn.recv()
        conn.send(("bogus", bogus))
        conn.recv()

    def requests(self) -> int:
        """Requests all of them have answered so far."""
        total = 0
        for conn in self._conns:
            conn.send(("requests", None))
            total += conn.recv()
        return total

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("stop", None))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
