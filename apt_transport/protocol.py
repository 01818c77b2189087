"""apt's method protocol: ``NNN Text`` + ``Field: value`` lines + a blank line.

Bytes are kept as they came: fields are decoded with ``surrogateescape`` so
that a message relayed between apt and its own method is byte-for-byte the
same except for what we rewrite on purpose.  Messages we *compose* pass
through :func:`field_value`, which guarantees a single line (a newline in a
field ends the message early and desynchronises apt: FIELD-NOTES).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from rebuildgate.errors import one_line

ENCODING = "utf-8"
ERRORS = "surrogateescape"
#: Longest line accepted; apt's own messages are far shorter, 601 included
#: (it is one line per item).  Longer means the peer is broken.
MAX_LINE = 1 << 20
#: Most fields in one message (601 Configuration carries a few hundred).
MAX_FIELDS = 100_000

_HEADER = re.compile(r"^(\d{3}) (.*)$")
_QUOTED_BYTES = re.compile(rb"%([0-9A-Fa-f]{2})")

CAPABILITIES = 100
LOG = 101
STATUS = 102
REDIRECT = 103
WARNING = 104
URI_START = 200
URI_DONE = 201
AUX_REQUEST = 351
URI_FAILURE = 400
GENERAL_FAILURE = 401
URI_ACQUIRE = 600
CONFIGURATION = 601


class ProtocolError(Exception):
    """The peer sent something that is not an apt method message."""


@dataclass
class Message:
    """One message; ``fields`` keeps order and duplicates (``Config-Item``)."""

    code: int
    text: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of *name* (case-insensitive, as apt's LookupTag)."""
        wanted = name.lower()
        for key, value in self.fields:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.fields if key.lower() == wanted]

    def set(self, name: str, value: str) -> None:
        """Replace every *name* field by one with *value* (kept in place)."""
        wanted = name.lower()
        out: list[tuple[str, str]] = []
        done = False
        for key, old in self.fields:
            if key.lower() == wanted:
                if not done:
                    out.append((key, value))
                    done = True
                continue
            out.append((key, old))
        if not done:
            out.append((name, value))
        self.fields = out

    def encode(self) -> bytes:
        lines = [f"{self.code} {self.text}"] + [f"{k}: {v}" for k, v in self.fields]
        return ("\n".join(lines) + "\n\n").encode(ENCODING, ERRORS)


def field_value(text: object, limit: int = 2000) -> str:
    """A value safe to put into a field we compose: one printable line."""
    return one_line(str(text), limit)


def compose(code: int, text: str, **fields: object) -> Message:
    """A new message; keyword ``Foo_Bar`` becomes field ``Foo-Bar``."""
    return Message(code, text, [(k.replace("_", "-"), field_value(v)) for k, v in fields.items() if v is not None])


def read_message(stream: BinaryIO) -> Message | None:
    """Block until one whole message arrived; None at end of file.

    Blank lines between messages are skipped, as apt's reader does.  A
    stream that ends inside a message counts as end of file: the peer died
    and no half message may be acted on.
    """
    header: str | None = None
    fields: list[tuple[str, str]] = []
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return None
        if len(raw) > MAX_LINE:
            raise ProtocolError(f"line longer than {MAX_LINE} bytes")
        line = raw.decode(ENCODING, ERRORS).rstrip("\r\n")
        if header is None:
            if not line.strip():
                continue
            header = line
            continue
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"malformed field line {line[:80]!r}")
        fields.append((name.strip(" \t"), value.strip(" \t")))
        if len(fields) > MAX_FIELDS:
            raise ProtocolError("too many fields in one message")
    match = _HEADER.match(header)
    if not match:
        raise ProtocolError(f"malformed message header {header[:80]!r}")
    return Message(int(match.group(1)), match.group(2).strip(), fields)


def dequote(text: str) -> str:
    """apt's DeQuoteString: ``%xx`` (two hex digits) becomes that byte."""
    if "%" not in text:
        return text
    data = _QUOTED_BYTES.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode(ENCODING, ERRORS))
    return data.decode(ENCODING, ERRORS)


def parse_config_item(value: str) -> tuple[str, str]:
    """``Config-Item: Name=Value`` (both quoted by apt) -> (name, value).

    Raises ValueError for an item without ``=`` or with an empty name.
    """
    name, sep, val = value.partition("=")
    if not sep:
        raise ValueError(f"config item without '=': {value[:80]!r}")
    name = dequote(name)
    if not name.strip():
        raise ValueError("config item with an empty name")
    return name, dequote(val)


def config_items(message: Message) -> Iterable[tuple[str, str] | ValueError]:
    """Every Config-Item of a 601 message, parsed; bad ones as ValueError."""
    for raw in message.get_all("Config-Item"):
        try:
            yield parse_config_item(raw)
        except ValueError as e:
            yield e
