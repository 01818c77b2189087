"""apt's own method for the inner scheme, run as our child.

The transfer itself (HTTP, TLS, proxies, resuming, file://) stays apt's
code: ``rebuildgate+http`` starts ``<Dir::Bin::Methods>/http`` exactly as apt
would (argv[0] = its path, stdin/stdout pipes, apt's stderr), and a reader
thread blocks on its stdout.  Nothing polls.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from typing import Callable

from . import protocol


class InnerMethodError(Exception):
    """The inner method could not be started or did not introduce itself."""


class InnerMethod:
    """One running inner method; messages arrive through *on_message*.

    *on_exit* is called once, from the reader thread, when the method's
    stdout ends (it exited or crashed) - never for a message stream that is
    still open.
    """

    def __init__(self, path: str, on_message: Callable[[protocol.Message], None],
                 on_exit: Callable[[int | None], None]) -> None:
        self.path = path
        self._on_message = on_message
        self._on_exit = on_exit
        self._first: "queue.Queue[protocol.Message | None]" = queue.Queue(maxsize=1)
        self._introduced = False
        self._write_lock = threading.Lock()
        self.closing = False
        try:
            self.proc = subprocess.Popen([path], executable=path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=None, close_fds=True)
        except OSError as e:
            raise InnerMethodError(f"cannot start apt's method {path}: {e.strerror or e}") from None
        self._reader = threading.Thread(target=self._read_loop, name="rbg-inner-reader", daemon=True)
        self._reader.start()

    def capabilities(self, timeout: float) -> protocol.Message:
        """Wait (bounded) for the ``100 Capabilities`` every method sends first."""
        try:
            first = self._first.get(timeout=timeout)
        except queue.Empty:
            raise InnerMethodError(f"apt's method {self.path} did not start within {timeout:g}s") from None
        if first is None:
            raise InnerMethodError(f"apt's method {self.path} exited before introducing itself")
        if first.code != protocol.CAPABILITIES:
            raise InnerMethodError(f"apt's method {self.path} began with '{first.code} {first.text}'")
        return first

    def send(self, message: protocol.Message) -> bool:
        """Write one message; False when the method no longer reads."""
        data = message.encode()
        with self._write_lock:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                return True
            except (BrokenPipeError, ValueError, OSError):
                return False

    def close(self, timeout: float = 5.0) -> None:
        """End the method as apt ends its methods: close stdin, then SIGINT, then kill."""
        self.closing = True
        with self._write_lock:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
            except OSError:
                pass
        steps = (lambda: None, lambda: self.proc.send_signal(signal.SIGINT), self.proc.kill)
        for step in steps:
            try:
                step()
                self.proc.wait(timeout=timeout / len(steps))
                return
            except subprocess.TimeoutExpired:
                continue
            except OSError:
                return

    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout
        try:
            while True:
                try:
                    message = protocol.read_message(stream)
                except protocol.ProtocolError:
                    message = None
                if message is None:
                    break
                if not self._introduced:
                    self._introduced = True
                    self._first.put(message)
                    continue
                self._on_message(message)
        finally:
            if not self._introduced:
                self._introduced = True
                self._first.put(None)
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            if not self.closing:
                self._on_exit(code)
