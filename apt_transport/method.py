"""``main()`` of the APT method ``rebuildgate+<scheme>``.

Lifecycle, as apt drives it:

1. apt execs ``<Dir::Bin::Methods>/rebuildgate+http`` as root.  For
   http, https and file, :mod:`.entry` introduces the method with the
   capabilities apt's own methods announce before anything else is
   imported (apt waits for ``100 Capabilities`` before it sends anything,
   and starts every method once just to read them); for another scheme the
   method starts apt's method for it and relays its capabilities.
2. apt sends ``601 Configuration``.  The method reads its items, starts the
   inner method again if ``Dir::Bin::Methods`` points elsewhere, loads the
   policy, keys and decision log as root, drops to ``APT::Sandbox::User``
   like apt's methods, and passes the configuration on to the inner method.
3. ``600 URI Acquire`` messages are relayed and gated (:mod:`.gate`).
4. apt closes stdin (or sends SIGINT, as it does when it is done): the
   method ends the inner method and exits 0.

Threads block on pipes (no polling): this one on apt's stdin, one on the
inner method's stdout, and the gate's workers on verdicts.  stdout is the
protocol channel: file descriptor 1 is moved aside and pointed at stderr so
that nothing else (a library's print) can ever corrupt it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import BinaryIO

from rebuildgate.errors import one_line

from . import protocol
from .aptconfig import MethodSettings
from .entry import DEFAULT_CAPABILITIES, KNOWN_CAPABILITIES
from .inner import InnerMethod, InnerMethodError

PREFIX = "rebuildgate+"  # as gate.PREFIX; gate is imported once apt sent its configuration

STARTED = time.monotonic()
STARTUP_TIMEOUT = 15.0
#: Capabilities that change how apt treats a method; a mismatch between the
#: table above and the real inner method is reported in the debug log.
SIGNIFICANT = ("Send-URI-Encoded", "Local-Only", "Single-Instance", "Removable", "Needs-Cleanup")


class _Stop(BaseException):
    """SIGINT/SIGTERM: apt is done with us (a BaseException: no handler may swallow it)."""


class AptChannel:
    """Our end of apt's pipes; writes are whole messages, one at a time."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader = reader
        self.writer = writer
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: protocol.Message) -> None:
        data = message.encode()
        with self._lock:
            if self.closed:
                return
            try:
                self.writer.write(data)
                self.writer.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True  # apt has gone; stdin ends next

    def receive(self) -> protocol.Message | None:
        return protocol.read_message(self.reader)


class Method:
    """One run of the method, from capabilities to exit."""

    def __init__(self, argv0: str, channel: AptChannel) -> None:
        self.access = os.path.basename(argv0)
        self.inner_access = self.access[len(PREFIX):] if self.access.startswith(PREFIX) else ""
        self.methods_dir = os.path.dirname(os.path.abspath(argv0))
        self.apt = channel
        self.inner: InnerMethod | None = None
        self.gate: Gate | None = None
        self.engine = None  # engine.Engine once configured
        self.settings = MethodSettings()
        self.startup_problem: str | None = None
        self._early: list[protocol.Message] = []  # inner messages before the gate exists
        self._early_lock = threading.Lock()

    # -- helpers ----------------------------------------------------------------

    def debug(self, text: str) -> None:
        if self.settings.debug:
            elapsed = time.monotonic() - STARTED
            os.write(2, (one_line(f"rebuildgate: debug: [{elapsed:6.3f}s] {text}", 4000) + "\n").encode("utf-8", "replace"))

    def _inner_problem(self) -> str | None:
        if not self.inner_access:
            return ("rebuildgate: use rebuildgate+http://, rebuildgate+https:// or rebuildgate+file:// "
                    f"in sources.list (this method was started as {self.access!r})")
        if self.inner_access.startswith(PREFIX.rstrip("+")) or "/" in self.inner_access:
            return f"rebuildgate: refusing to delegate {self.access} to {self.inner_access!r}"
        return None

    def _spawn(self, path: str) -> protocol.Message:
        inner = InnerMethod(path, self._on_inner_message, self._on_inner_exit)
        try:
            caps = inner.capabilities(STARTUP_TIMEOUT)
        except InnerMethodError:
            inner.close(1.0)
            raise
        self.inner = inner
        return caps

    # -- messages from the inner method -------------------------------------------

    def _on_inner_message(self, message: protocol.Message) -> None:
        gate = self.gate
        if gate is None:
            with self._early_lock:
                if self.gate is None:
                    self._early.append(message)
                    return
                gate = self.gate
        try:
            gate.from_inner(message)
        except Exception as e:  # noqa: BLE001 - never let the relay thread die: apt would hang
            self._internal_error(message.get("URI"), e)

    def _on_inner_exit(self, status: int | None) -> None:
        if self.gate is not None:
            self.gate.inner_exited(status)
        else:
            self.startup_problem = f"rebuildgate: apt's method for {self.inner_access} exited (status {status})"

    def _internal_error(self, uri: str | None, error: BaseException) -> None:
        text = f"rebuildgate: internal error: {type(error).__name__}: {error}"
        if uri and self.gate is not None:
            item = self.gate.items.get(uri) or self.gate.items.get(PREFIX + uri)
            if item is not None:
                self.gate._fail(item, text)
                return
        self.apt.send(protocol.compose(protocol.LOG, "Log", Message=text))

    # -- the run ------------------------------------------------------------------

    def introduce(self, introduced: bool = False) -> None:
        """Send ``100 Capabilities``: the inner method's own, plus ours.

        For a known scheme :mod:`.entry` has sent them already (*introduced*).
        """
        fields = list(DEFAULT_CAPABILITIES)
        problem = self._inner_problem()
        if problem:
            self.startup_problem = problem
        elif self.inner_access in KNOWN_CAPABILITIES:
            if introduced:
                return
            fields = list(KNOWN_CAPABILITIES[self.inner_access])
        else:
            guess = os.path.join(self.methods_dir, self.inner_access)
            try:
                caps = self._spawn(guess)
                fields = [(k, v) for k, v in caps.fields]
            except InnerMethodError:
                pass  # found again through Dir::Bin::Methods once apt sent it
        caps_msg = protocol.Message(protocol.CAPABILITIES, "Capabilities", fields)
        caps_msg.set("Send-Config", "true")
        # Pipelining lets apt queue many downloads with us, which is what lets
        # them be verified concurrently; every apt method reads a queue.
        caps_msg.set("Pipeline", "true")
        self.apt.send(caps_msg)

    def configure(self, message: protocol.Message) -> None:
        from .aptconfig import AptConfig
        from .gate import Gate
        from .records import AptRecords
        from .sandbox import SandboxError, current, drop_privileges

        config = AptConfig.from_message(message)
        self.settings = config.settings(self.inner_access or "http")
        self._setup_logging()
        self.debug(f"{self.access} started as {current()}; {len(config.items)} config items"
                   + (f", skipped: {'; '.join(self.settings.skipped)}" if self.settings.skipped else ""))
        refusal = self.settings.error and f"rebuildgate: apt configuration error: {self.settings.error}"
        inner_gone = self.startup_problem if not self.inner_access else None
        starting: InnerMethod | None = None
        if self.inner_access and not self.startup_problem:
            wanted = config.method_path(self.inner_access)
            if self.inner is None or os.path.realpath(self.inner.path) != os.path.realpath(wanted):
                if self.inner is not None:
                    self.inner.close(2.0)
                    self.inner = None
                try:  # it starts while the library loads; its capabilities are read after
                    starting = InnerMethod(wanted, self._on_inner_message, self._on_inner_exit)
                except InnerMethodError as e:
                    inner_gone = f"rebuildgate: {e}"
        elif self.startup_problem:
            inner_gone = self.startup_problem
        if not refusal:
            from .engine import load_engine  # the library's heavy imports: after apt got our capabilities

            self.engine = load_engine(self.settings.policy, self.settings.proxy)
            refusal = self.engine.refusal
        if starting is not None:
            try:
                caps = starting.capabilities(STARTUP_TIMEOUT)
                self.inner = starting
                self._compare_capabilities(caps)
            except InnerMethodError as e:
                starting.close(1.0)
                inner_gone = f"rebuildgate: {e}"
        try:
            who = drop_privileges(self.settings.sandbox_user, self.settings.no_drop_privs)
            self.debug(f"running as {who} (APT::Sandbox::User={self.settings.sandbox_user!r}); policy "
                       f"{self.engine.policy_path if self.engine else None}")
        except SandboxError as e:
            refusal = one_line(f"rebuildgate: {e}")
            if self.engine is not None:
                self.engine.close()
            self.engine = None
        verifier = self.engine.verifier if self.engine and not refusal else None
        records = AptRecords(config.apply_globally)
        inner = self.inner
        proxy = self.settings.proxy
        gate = Gate(self.apt.send, inner.send if inner else (lambda m: False), verifier, refusal,
                    self.settings.archives_dir, records, self.debug if self.settings.debug else None,
                    inner_proxy=proxy.auto_detected if proxy is not None else None)
        if inner_gone or inner is None:
            gate.inner_gone = inner_gone or f"rebuildgate: apt's method for {self.inner_access} is not available"
        if self.engine and self.engine.warnings:
            gate.warnings.extend(self.engine.warnings)
        if inner is not None:
            inner.send(message)
        with self._early_lock:
            self.gate = gate
            early, self._early = self._early, []
        for queued in early:
            self._on_inner_message(queued)
        if refusal:
            self.debug(refusal)

    def _compare_capabilities(self, caps: protocol.Message) -> None:
        told = dict(KNOWN_CAPABILITIES.get(self.inner_access, ()))
        if not told:
            return
        for name in SIGNIFICANT:
            if (caps.get(name) or "false") != told.get(name, "false"):
                self.debug(f"apt's {self.inner_access} method announces {name}: {caps.get(name)}, "
                           f"apt was told {told.get(name, 'false')}")

    def _setup_logging(self) -> None:
        """The core logs relaxations with `logging`; apt shows them via 104 Warning instead."""
        from .engine import route_library_log

        route_library_log(self.settings.debug)

    def run(self, introduced: bool = False) -> int:
        self.introduce(introduced)
        # apt answers with its configuration at once; the library's imports
        # (~0.1 s) overlap with reading it and starting apt's inner method.
        threading.Thread(target=_preload, name="rbg-preload", daemon=True).start()
        while True:
            try:
                message = self.apt.receive()
            except protocol.ProtocolError as e:
                self.apt.send(protocol.compose(protocol.GENERAL_FAILURE, "General Failure",
                                               Message=f"rebuildgate: unreadable message from apt: {e}"))
                return 100
            if message is None:
                return 0
            try:
                self.dispatch(message)
            except Exception as e:  # noqa: BLE001 - answer, never die silently
                if message.code == protocol.URI_ACQUIRE and message.get("URI"):
                    self.apt.send(protocol.compose(protocol.URI_FAILURE, "URI Failure", URI=message.get("URI"),
                                                   Message=f"rebuildgate: internal error: {type(e).__name__}: {e}"))
                else:
                    self.apt.send(protocol.compose(protocol.GENERAL_FAILURE, "General Failure",
                                                   Message=f"rebuildgate: internal error: {type(e).__name__}: {e}"))

    def dispatch(self, message: protocol.Message) -> None:
        if message.code == protocol.CONFIGURATION:
            if self.gate is None:
                self.configure(message)
            return
        if self.gate is None:  # apt sends its configuration first; without it, refuse
            self.configure(protocol.Message(protocol.CONFIGURATION, "Configuration", []))
            assert self.gate is not None
            self.gate.refusal = self.gate.refusal or "rebuildgate: apt sent no configuration"
        self.gate.from_apt(message)

    def shutdown(self) -> None:
        if self.settings.debug:
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.debug(f"exiting; CPU used {usage.ru_utime:.2f}s user, {usage.ru_stime:.2f}s system")
        if self.inner is not None:
            self.inner.close(4.0)
        if self.gate is not None:
            self.gate.close()
        if self.engine is not None:
            self.engine.close()


def _preload() -> None:
    try:
        import rebuildgate.apt.engine  # noqa: F401
        import rebuildgate.apt.gate  # noqa: F401
    except Exception:  # noqa: BLE001 - imported again, with its error, where it is needed
        pass


_stopping = False


def _raise_stop(signum, frame) -> None:  # noqa: ANN001
    """The first SIGINT/SIGTERM ends the run; later ones are ignored (a second
    _Stop raised during the shutdown would print a traceback into apt's output)."""
    global _stopping
    if not _stopping:
        _stopping = True
        raise _Stop()


def main(argv0: str, introduced: bool = False) -> int:
    """The method's run under the name apt started it as, after :func:`.entry.main`.

    apt may stop the method at any moment, its start-up included (it stops
    the instance it ran only to read the capabilities at once): the stop
    signal's handler is installed inside the ``try`` that catches it.
    """
    writer = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # fd 1 now reaches stderr: stray output cannot corrupt the protocol
    sys.stdout = sys.stderr
    reader = os.fdopen(os.dup(0), "rb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    method: Method | None = None
    code = 0
    try:
        try:
            signal.signal(signal.SIGINT, _raise_stop)
            signal.signal(signal.SIGTERM, _raise_stop)
            method = Method(argv0, AptChannel(reader, writer))
            code = method.run(introduced)
        finally:
            global _stopping
            _stopping = True  # from here on a stop signal changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except _Stop:
        code = 0
    except Exception as e:  # noqa: BLE001 - last resort: one line, then leave
        os.write(2, (one_line(f"rebuildgate: method crashed: {type(e).__name__}: {e}") + "\n").encode())
        code = 100
    # apt waits for us: whatever the shutdown meets, the process ends (SIGALRM's
    # default action) well within a minute.
    signal.alarm(15)
    try:
        if method is not None:
            method.shutdown()
    except BaseException:  # noqa: BLE001 - leaving anyway
        pass
    # Worker threads may still wait on a rebuilder (bounded by timeouts);
    # apt is gone and nothing they produce matters now.
    os._exit(code)
