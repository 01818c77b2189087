"""apt's JSON hook protocol (``AptCli::Hooks::*``), as apt 2.6 speaks it.

Observed with apt 2.6.2 (FIELD-NOTES "APT hooks"; ``doc/json-hooks-protocol.md``
in apt's source): apt runs the hook through ``sh -c`` once per
notification, hands it a socket whose fd is in ``$APT_HOOK_SOCKET``, and
sends JSON-RPC messages each ended by an empty line::

    {"jsonrpc":"2.0","method":"org.debian.apt.hooks.hello","id":0,"params":{"versions":["0.1","0.2"]}}
    {"jsonrpc":"2.0","method":"org.debian.apt.hooks.install.pre-prompt","params":{"command":"install",...,"packages":[...]}}
    {"jsonrpc":"2.0","method":"org.debian.apt.hooks.bye","params":{}}

The hook answers hello with the version it picked (an error reply aborts
apt) and nothing else; its exit status is its verdict (non-zero: apt stops
with ``E: Failure running hook``).  The same command also gets
``install.package-list``, ``install.statistics``, ``install.post`` and
``install.fail``, which the gate has nothing to say about.

Only this module knows the wire format.  apt runs the hook for every
notification, and for all but the pre-prompt one there is nothing to do
but answer hello and read to bye: three runs of every ``apt-get install``.
So it imports nothing but ``json``, ``os`` and ``select`` (about 5 ms; the
socket, dataclasses and typing modules it used took 20 ms more per run), and
:mod:`.prompt_entry` loads the rest only for a pre-prompt notification.
"""

from __future__ import annotations

import json
import os
import select
from collections import namedtuple

HELLO = "org.debian.apt.hooks.hello"
BYE = "org.debian.apt.hooks.bye"
PRE_PROMPT = "org.debian.apt.hooks.install.pre-prompt"
#: Protocol versions this hook understands, best first (0.1 has every field it reads).
VERSIONS = ("0.2", "0.1")
#: Seconds to wait for apt's next message: apt writes them back to back.
READ_TIMEOUT = 30.0
#: A notification lists every package of the transaction; far above any real one.
MAX_MESSAGE = 64 << 20
_CHUNK = 1 << 16


class ProtocolError(Exception):
    """apt's hook messages cannot be understood (one line)."""


#: One JSON-RPC message from apt: ``method``, ``params`` (a dict) and ``id``.
Message = namedtuple("Message", "method params id", defaults=(None, None))


class Channel:
    """The socket apt hands a JSON hook, read and written as a plain file descriptor."""

    def __init__(self, fd: int, timeout: float = READ_TIMEOUT) -> None:
        self._fd = fd
        self._timeout = timeout
        self._buffer = b""
        self._eof = False
        self._closed = False

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> "Channel":
        text = environ.get("APT_HOOK_SOCKET", "")
        if not text.isdigit():
            raise ProtocolError("APT_HOOK_SOCKET is not set: run by apt through AptCli::Hooks only")
        try:
            os.fstat(int(text))
        except OSError as e:
            raise ProtocolError(f"APT_HOOK_SOCKET={text} is not an open file descriptor: {e.strerror}") from None
        return cls(int(text))

    def read(self) -> Message | None:
        """The next message (its lines up to an empty line), None when apt closed the socket."""
        while True:
            self._buffer = self._buffer.lstrip(b" \t\r\n")
            end = self._message_end()
            if end is not None:
                data, self._buffer = self._buffer[:end], self._buffer[end:]
                return parse(data)
            if len(self._buffer) > MAX_MESSAGE:
                raise ProtocolError("a message from apt is larger than 64 MiB")
            if self._eof:
                data, self._buffer = self._buffer, b""
                return parse(data) if data.strip() else None
            self._fill()

    def _message_end(self) -> int | None:
        """Where the first message in the buffer ends: at its first empty line."""
        at = 0
        while (nl := self._buffer.find(b"\n", at)) >= 0:
            line_end = self._buffer.find(b"\n", nl + 1)
            if line_end < 0:
                return None
            if not self._buffer[nl + 1:line_end].strip():
                return nl + 1
            at = nl + 1
        return None

    def _fill(self) -> None:
        try:
            ready, _, _ = select.select([self._fd], [], [], self._timeout)
            if not ready:
                raise ProtocolError(f"reading from apt: nothing within {self._timeout:g}s")
            chunk = os.read(self._fd, _CHUNK)
        except OSError as e:
            raise ProtocolError(f"reading from apt: {e.strerror or e}") from None
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True

    def handshake(self) -> str:
        """Read apt's hello and answer it; returns the version agreed on."""
        hello = self.read()
        if hello is None or hello.method != HELLO:
            raise ProtocolError(f"expected {HELLO} from apt, got {hello.method if hello else 'end of input'}")
        offered = hello.params.get("versions") or []
        version = next((v for v in VERSIONS if v in offered), None)
        if version is None:
            self._send({"jsonrpc": "2.0", "id": hello.id,
                        "error": {"code": -32000, "message": f"rebuildgate speaks {', '.join(VERSIONS)}"}})
            raise ProtocolError(f"apt offers hook protocol {offered}, rebuildgate speaks {list(VERSIONS)}")
        self._send({"jsonrpc": "2.0", "id": hello.id, "result": {"version": version}})
        return version

    def until_bye(self) -> None:
        """Read what apt still sends up to its bye (apt writes it before it waits for the hook)."""
        while (message := self.read()) is not None and message.method != BYE:
            pass

    def close(self) -> None:
        """Let apt see the end of the conversation (before the verdict: apt only waits for the exit)."""
        if not self._closed:
            self._closed = True
            try:
                os.close(self._fd)
            except OSError:
                pass

    def _send(self, obj: dict) -> None:
        data = json.dumps(obj).encode() + b"\n\n"
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            raise ProtocolError(f"writing to apt: {e.strerror or e}") from None


def parse(data: bytes) -> Message:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"apt sent a message that is not JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
        raise ProtocolError("apt sent a JSON-RPC message without a method")
    params = obj.get("params")
    return Message(obj["method"], params if isinstance(params, dict) else {}, obj.get("id"))


#: One package the transaction will download and unpack, apt's name for the version:
#: ``name``, ``arch`` (the package's architecture, apt's cache key, not the
#: version's "all"), ``version`` and ``version_id``.
Install = namedtuple("Install", "name arch version version_id")


#: Modes that fetch a file (deinstall and purge never do).
FETCHING_MODES = ("install", "upgrade", "downgrade", "reinstall")


def installs(params: dict) -> list[Install]:
    """The packages of a pre-prompt notification that apt will download.

    Raises :class:`ProtocolError` for a package entry without the fields
    apt 2.6 sends (the caller then leaves the verdict to the method).
    """
    out = []
    for package in params.get("packages") or []:
        if not isinstance(package, dict) or package.get("mode") not in FETCHING_MODES:
            continue
        install = (package.get("versions") or {}).get("install")
        if not isinstance(install, dict):
            continue
        try:
            out.append(Install(str(package["name"]), str(package["architecture"]), str(install["version"]),
                               int(install["id"])))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"apt sent a package without name, architecture or version id: "
                                f"{json.dumps(package)[:200]}") from None
    return out
