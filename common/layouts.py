"""Where each rebuilder layout publishes evidence: URLs only, no I/O.

======================  ====================================================
layout                  evidence of one artifact
======================  ====================================================
``package-rebuilder``   ``{url}/sources/{source}/{version}/metadata``
                        (version without epoch, as on disk)
``rebuilderd``          ``{url}/api/v1/packages/binary?name=&version=&architecture=``,
                        then ``{url}/api/v1/builds/{build_id}/artifacts/{artifact_id}/attestation``
                        for each record of that answer
``template``            the admin's ``url_template``: ``{url} {source} {name}
                        {version} {upstream_version} {arch} {filename} {sha256}``
======================  ====================================================

Names and versions come from repository metadata and package headers,
which an attacker may control.  Every such value is validated before it
becomes a URL or path segment (:func:`_component`): it can never climb out
of or into another directory, nor carry control characters into a request.
For ``file://`` rebuilders the segments are used raw, on a base decoded once
(:func:`location`), so ``%2f`` in a version is a literal file name and never
a slash; for http(s) they are percent-quoted.

A template's placeholders are filled only when it uses them: a template of
``{url}/{filename}.link`` needs no package name, version or architecture.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote, unquote, urlencode, urlsplit

from .errors import FetchError
from .model import Artifact

if TYPE_CHECKING:
    from .policy import Rebuilder

_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")

# Each placeholder but {url}: how to read it from an artifact, and its name in messages.
_PLACEHOLDERS: dict[str, tuple[Callable[[Artifact], str | None], str]] = {
    "source": (lambda a: a.source or a.name, "source name"),
    "name": (lambda a: a.name, "package name"),
    "version": (lambda a: a.version, "version"),
    "upstream_version": (lambda a: a.upstream_version, "version"),
    "arch": (lambda a: a.arch, "architecture"),
    "filename": (lambda a: a.filename, "file name"),
    "sha256": (lambda a: a.sha256.lower(), "sha256"),
}


def _component(value: str | None, what: str) -> str:
    """Validate one value that goes into a URL or path segment.

    Names and versions come from repository metadata and package headers,
    which an attacker may control: a segment can never climb out of or
    into another directory, and must be text a URL can carry.
    """
    if not value:
        raise FetchError(f"no {what} known for this package, cannot locate evidence")
    if value in (".", "..") or _UNSAFE.search(value):
        raise FetchError(f"unsafe {what} {value[:60]!r} refused")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FetchError(f"{what} {value[:60]!r} is not valid UTF-8; refused") from None
    return value


def location(url: str) -> str:
    """The internal form of a policy URL: ``file://`` + a plain path, decoded once.

    Evidence paths are built from raw, validated segments appended to this,
    and read without any further URL decoding, so ``%41``, ``#`` or ``?`` in
    a version stay what they are.  http(s) URLs are returned unchanged.
    """
    if url.startswith("file://"):
        return "file://" + unquote(urlsplit(url).path)
    return url


def _segment(value: str | None, what: str, is_file: bool) -> str:
    """A validated segment: raw for a ``file://`` path, percent-quoted for http(s)."""
    value = _component(value, what)
    return value if is_file else quote(value, safe="+~")


@lru_cache(maxsize=64)
def template_fields(template: str) -> frozenset[str]:
    """The placeholders *template* uses (``{{`` and ``}}`` are literal braces)."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name is not None)


def evidence_urls(rebuilder: Rebuilder, artifact: Artifact) -> list[str]:
    """The URLs of *artifact*'s evidence at a ``package-rebuilder`` or ``template`` rebuilder.

    Raises :class:`FetchError` when a value the layout needs is unknown or
    unsafe, and for a layout without fixed URLs (``rebuilderd``: see
    :func:`rebuilderd_lookup_url`).
    """
    is_file = rebuilder.url.startswith("file://")
    base = location(rebuilder.url)
    if rebuilder.layout == "package-rebuilder":
        source = _segment(artifact.source or artifact.name, "source name", is_file)
        version = _segment(artifact.upstream_version, "version", is_file)
        return [f"{base}/sources/{source}/{version}/metadata"]
    if rebuilder.layout == "template":
        if not rebuilder.url_template:
            raise FetchError('layout "template" without a url_template')
        used = template_fields(rebuilder.url_template)
        unknown = used - _PLACEHOLDERS.keys() - {"url"}
        if unknown:  # the policy refuses these; never let str.format evaluate one
            raise FetchError(f"url_template has an unknown placeholder {{{min(unknown)[:40]}}}")
        values = {"url": base}
        for field, (get, what) in _PLACEHOLDERS.items():  # in this order, for a stable message
            if field in used:
                values[field] = _segment(get(artifact), what, is_file)
        return [rebuilder.url_template.format(**values)]
    raise FetchError(f"layout {rebuilder.layout} has no fixed URL")


def rebuilderd_lookup_url(url: str, artifact: Artifact) -> str:
    """rebuilderd's list of the rebuilds of *artifact* (name, version with epoch, architecture)."""
    query = urlencode({
        "name": _component(artifact.name, "package name"),
        "version": _component(artifact.version, "version"),
        "architecture": _component(artifact.arch, "architecture"),
    })
    return f"{url}/api/v1/packages/binary?{query}"


def rebuilderd_attestation_url(url: str, build_id: int, artifact_id: int) -> str:
    """The attestation of one record of :func:`rebuilderd_lookup_url`'s answer."""
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (build_id, artifact_id)):
        raise FetchError(f"rebuilderd ids {build_id!r:.40}, {artifact_id!r:.40} are not non-negative integers")
    return f"{url}/api/v1/builds/{build_id}/artifacts/{artifact_id}/attestation"
