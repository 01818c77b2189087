"""apt sources as an admin writes them: one-line entries and deb822 stanzas.

``rebuildgate check-config --explain`` takes a line copied from
sources.list (or a stanza from a ``.sources`` file) and says which policy
rule governs the packages that come from it.  Only the fields that decide
that are read: the type, the URIs, suites and components (sources.list(5)).
Options (``[trusted=yes]``, ``Signed-By:``...) change nothing here and are
skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import repoid
from .errors import RebuildgateError

TYPES = ("deb", "deb-src")
_DEB822_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:(.*)$")


class SourcesError(RebuildgateError):
    """A sources.list line or deb822 stanza that cannot be read (exit 2)."""


@dataclass(frozen=True)
class AptSource:
    """One URI of one sources entry."""

    type: str  # deb | deb-src
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    enabled: bool = True

    @property
    def through_rebuildgate(self) -> bool:
        """apt hands this entry's downloads to rebuildgate's method only with the prefix."""
        return self.uri.startswith(repoid.APT_PREFIX)

    @property
    def repo_id(self) -> str:
        return repoid.apt_repo_id(self.uri)

    @property
    def line(self) -> str:
        """The entry in one-line form, for messages."""
        return " ".join((self.type, self.uri, *self.suites, *self.components))


def looks_like_sources(text: str) -> bool:
    """Is *text* a one-line entry or a deb822 stanza (rather than a repository id)?"""
    first = text.strip().split(None, 1)
    if first and first[0] in TYPES:
        return True
    return any(_field_name(line) in ("types", "uris") for line in text.splitlines())


def parse(text: str) -> list[AptSource]:
    """Every source in *text*: one-line entries (one per line) or deb822 stanzas."""
    lines = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    if any(_field_name(line) in ("types", "uris") for line in lines):
        return parse_deb822(text)
    out = [parse_one_line(line) for line in lines if line.strip()]
    if not out:
        raise SourcesError("no sources.list entry given")
    return out


def parse_one_line(line: str) -> AptSource:
    """``deb [options] URI suite [component...]``."""
    text = line.split("#", 1)[0].strip()
    words = text.split()
    if not words or words[0] not in TYPES:
        raise SourcesError(f"not a sources.list entry (it must start with deb or deb-src): {line.strip()[:120]!r}")
    rest = words[1:]
    if rest and rest[0].startswith("["):
        while rest and not rest[0].endswith("]"):
            rest = rest[1:]
        if not rest:
            raise SourcesError(f"sources.list entry: '[' options are not closed by ']': {line.strip()[:120]!r}")
        rest = rest[1:]
    if len(rest) < 2:
        raise SourcesError(f"sources.list entry needs a URI and a suite: {line.strip()[:120]!r}")
    uri, suite, components = rest[0], rest[1], tuple(rest[2:])
    _check_uri(uri)
    return AptSource(words[0], uri, (suite,), components)


def parse_deb822(text: str) -> list[AptSource]:
    """Stanzas of ``Types:``, ``URIs:``, ``Suites:``, ``Components:`` (and ``Enabled:``)."""
    out: list[AptSource] = []
    for stanza in re.split(r"\n[ \t]*\n", text.strip()):
        fields: dict[str, str] = {}
        last = None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#"):
                continue
            if raw[:1].isspace() and last is not None:  # a continuation line
                fields[last] += " " + raw.strip()
                continue
            found = _DEB822_FIELD.match(raw)
            if found is None:
                raise SourcesError(f"deb822 stanza: not a 'Field: value' line: {raw.strip()[:120]!r}")
            last = found.group(1).lower()
            fields[last] = found.group(2).strip()
        types, uris = fields.get("types", "").split(), fields.get("uris", "").split()
        suites, components = fields.get("suites", "").split(), fields.get("components", "").split()
        if not types or not uris or not suites:
            raise SourcesError("deb822 stanza needs Types:, URIs: and Suites:")
        for kind in types:
            if kind not in TYPES:
                raise SourcesError(f"deb822 stanza: type {kind!r} is not deb or deb-src")
        enabled = fields.get("enabled", "yes").strip().lower() not in ("no", "false", "0")
        for uri in uris:
            _check_uri(uri)
            out += [AptSource(kind, uri, tuple(suites), tuple(components), enabled) for kind in types]
    return out


def _field_name(line: str) -> str:
    found = _DEB822_FIELD.match(line)
    return found.group(1).lower() if found else ""


def _check_uri(uri: str) -> None:
    if not repoid.is_uri(uri):
        raise SourcesError(f"{uri[:120]!r} is not a URI (e.g. rebuildgate+https://deb.debian.org/debian)")
