"""Exception classes for rebuildgate.

Every error carries a message a person can act on: it says what was being
done, on which file/key/URL, and what was wrong.  Front ends print
``str(error)`` on one line, so messages never contain newlines.
"""

from __future__ import annotations


def one_line(text: str, limit: int = 400) -> str:
    """Collapse *text* to a single printable line of at most *limit* chars.

    apt's method protocol breaks on a newline inside a field, and dnf prints
    errors in a table, so every message that leaves the library goes
    through here.
    """
    flat = " ".join(str(text).split())
    flat = "".join(ch if ch.isprintable() else "?" for ch in flat)
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return flat


class RebuildgateError(Exception):
    """Base class: anything rebuildgate raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class ConfigError(RebuildgateError):
    """The admin's configuration is unusable; commands exit 2.

    Raised for a policy file that cannot be read or parsed, a key with a
    wrong type or value, an unknown key, or a key file that cannot be
    loaded.  The message names the file and the key.
    """

    def __init__(self, path: object, key: str | None, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


class PatternError(RebuildgateError):
    """A repository pattern given on the command line can never match a
    repository id (``halt sign --repository``); the command exits 2."""


class EvidenceError(RebuildgateError):
    """A rebuilder's document cannot count as a vote.

    ``kind`` says why, in the words the verdict reports: ``malformed``,
    ``unsigned``, ``bad-signature``, ``unknown-key``, ``unsupported``.
    """

    kind = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MalformedEvidence(EvidenceError):
    kind = "malformed"


class UnsignedEvidence(EvidenceError):
    kind = "unsigned"


class BadSignature(EvidenceError):
    kind = "bad-signature"


class UnknownKey(EvidenceError):
    kind = "unknown-key"


class UnsupportedEvidence(EvidenceError):
    kind = "unsupported"


class FetchError(RebuildgateError):
    """Evidence could not be fetched from one rebuilder (network, HTTP, size)."""

    kind = "fetch-error"


class RebuilderOverBudget(FetchError):
    """A rebuilder that cost too much time or CPU earlier in this run is not asked again.

    See :mod:`rebuildgate.budget`; the message says which budget it overdrew.
    """

    kind = "slow"


class EvidenceMissing(FetchError):
    """The rebuilder answered, but has nothing for this artifact (404)."""

    kind = "missing"


class PackageError(RebuildgateError):
    """A local package file cannot be read (not a .deb/.rpm, truncated...)."""
