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

Evidence bundles
----------------

An evidence bundle (``rebuildgate collect``; read with ``[fetch] bundle``)
holds each document at ``<bundle>/<rebuilder name>/<path>``, where *path*
is defined here, once, beside the URL (:class:`Location`), from the same
validated raw segments:

======================  ====================================================
layout                  path in the bundle, below ``<rebuilder name>/``
======================  ====================================================
``package-rebuilder``   ``sources/{source}/{version}/metadata``
``rebuilderd``          ``api/v1/packages/binary/{name}/{version}/{arch}.json``
                        (the lookup's answer; version with epoch), then
                        ``api/v1/builds/{build_id}/artifacts/{artifact_id}/attestation``
``template``            the template after ``{url}``, filled with raw
                        segments (``{url}/{source}/{filename}.link`` ->
                        ``{source}/{filename}.link``)
======================  ====================================================

A path is a tuple of segments, none empty, ``.`` or ``..``, none holding a
slash or a control character, so it can never leave the rebuilder's
directory of the bundle; the reader walks it without following symlinks
(:meth:`rebuildgate.fetch.Transport`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Location:
    """One evidence document: where the rebuilder serves it, and its path in a bundle."""

    url: str
    path: tuple[str, ...]  # below <bundle>/<rebuilder name>/ (see the module docstring)

    @property
    def relpath(self) -> str:
        return "/".join(self.path)


def _bundle_segments(text: str, what: str) -> tuple[str, ...]:
    """Split a filled template's tail into bundle path segments, refusing any
    that could climb out of (or hide in) the rebuilder's directory."""
    parts = tuple(text.lstrip("/").split("/"))
    for part in parts:
        if part in ("", ".", "..") or _UNSAFE.search(part.replace("/", "")):
            raise FetchError(f"{what} {text[:80]!r} cannot be a path in an evidence bundle "
                             f"(empty, '.' or '..' segment, or a control character)")
    return parts


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
    return [loc.url for loc in evidence_locations(rebuilder, artifact)]


def evidence_locations(rebuilder: Rebuilder, artifact: Artifact) -> list[Location]:
    """:func:`evidence_urls` with each document's path in an evidence bundle."""
    is_file = rebuilder.url.startswith("file://")
    base = location(rebuilder.url)
    if rebuilder.layout == "package-rebuilder":
        source = _component(artifact.source or artifact.name, "source name")
        version = _component(artifact.upstream_version, "version")
        url = (f"{base}/sources/{_segment(source, 'source name', is_file)}/"
               f"{_segment(version, 'version', is_file)}/metadata")
        return [Location(url, ("sources", source, version, "metadata"))]
    if rebuilder.layout == "template":
        if not rebuilder.url_template:
            raise FetchError('layout "template" without a url_template')
        used = template_fields(rebuilder.url_template)
        unknown = used - _PLACEHOLDERS.keys() - {"url"}
        if unknown:  # the policy refuses these; never let str.format evaluate one
            raise FetchError(f"url_template has an unknown placeholder {{{min(unknown)[:40]}}}")
        values, raw = {"url": base}, {"url": ""}
        for field, (get, what) in _PLACEHOLDERS.items():  # in this order, for a stable message
            if field in used:
                raw[field] = _component(get(artifact), what)
                values[field] = _segment(raw[field], what, is_file)
        if not rebuilder.url_template.startswith("{url}"):
            raise FetchError("url_template must start with {url}")
        tail = rebuilder.url_template.format(**raw)
        return [Location(rebuilder.url_template.format(**values), _bundle_segments(tail, "url_template path"))]
    raise FetchError(f"layout {rebuilder.layout} has no fixed URL")


def rebuilderd_lookup_url(url: str, artifact: Artifact) -> str:
    """rebuilderd's list of the rebuilds of *artifact* (name, version with epoch, architecture)."""
    return rebuilderd_lookup(url, artifact).url


def rebuilderd_lookup(url: str, artifact: Artifact) -> Location:
    """:func:`rebuilderd_lookup_url` and the answer's path in a bundle."""
    name = _component(artifact.name, "package name")
    version = _component(artifact.version, "version")
    arch = _component(artifact.arch, "architecture")
    query = urlencode({"name": name, "version": version, "architecture": arch})
    return Location(f"{url}/api/v1/packages/binary?{query}",
                    ("api", "v1", "packages", "binary", name, version, f"{arch}.json"))


def rebuilderd_attestation_url(url: str, build_id: int, artifact_id: int) -> str:
    """The attestation of one record of :func:`rebuilderd_lookup_url`'s answer."""
    return rebuilderd_attestation(url, build_id, artifact_id).url


def rebuilderd_attestation(url: str, build_id: int, artifact_id: int) -> Location:
    """:func:`rebuilderd_attestation_url` and the attestation's path in a bundle."""
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (build_id, artifact_id)):
        raise FetchError(f"rebuilderd ids {build_id!r:.40}, {artifact_id!r:.40} are not non-negative integers")
    return Location(f"{url}/api/v1/builds/{build_id}/artifacts/{artifact_id}/attestation",
                    ("api", "v1", "builds", str(build_id), "artifacts", str(artifact_id), "attestation"))


def bundle_url(bundle: str, rebuilder_name: str, loc: Location) -> str:
    """The internal ``file://`` location of *loc* in the bundle directory *bundle*.

    The rebuilder's name is checked like any segment (the policy refuses
    names that cannot be a directory when a bundle is set).
    """
    name = _component(rebuilder_name, "rebuilder name")
    return f"file://{bundle.rstrip('/')}/{name}/{loc.relpath}"
