"""Drive the method process directly, speaking apt's protocol as apt does.

apt-get hides much of what a method does; these helpers let a test send
exactly the messages it wants (odd configuration items, garbage, stdin
closed at any moment) and read every answer with a timeout, so a hang
fails the test instead of blocking it.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from pathlib import Path

from rebuildgate.apt import protocol


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class MethodProcess:
    """The method started from *methods_dir* as *access* (e.g. rebuildgate+http)."""

    def __init__(self, methods_dir: Path, access: str = "rebuildgate+http", env: dict | None = None) -> None:
        path = methods_dir / access
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("REBUILDGATE_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen([str(path)], executable=str(path), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
        self.messages: "queue.Queue[protocol.Message | None]" = queue.Queue()
        self.raw = bytearray()
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            try:
                message = protocol.read_message(self.proc.stdout)
            except protocol.ProtocolError:
                message = None
            self.messages.put(message)
            if message is None:
                return

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def send(self, code: int, text: str, fields: list[tuple[str, str]]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(protocol.Message(code, text, fields).encode())
        self.proc.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def configure(self, items: list[tuple[str, str]]) -> None:
        self.send(601, "Configuration", [("Config-Item", f"{k}={v}") for k, v in items])

    def acquire(self, uri: str, filename: str, **fields: str) -> None:
        self.send(600, "URI Acquire", [("URI", uri), ("Filename", filename)]
                  + [(k.replace("_", "-"), v) for k, v in fields.items()])

    def next(self, timeout: float = 15.0) -> protocol.Message | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the method within {timeout}s") from None

    def until(self, codes: set[int], uri: str | None = None, timeout: float = 15.0) -> protocol.Message:
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"method closed its output; stderr: {self.stderr[-2000:]!r}")
            if message.code in codes and (uri is None or message.get("URI") == uri):
                return message

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        for pid in reversed(descendants(self.proc.pid)):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        self.proc.wait(timeout=5)
