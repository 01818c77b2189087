"""Records shared by the verification modules.

They are plain frozen dataclasses so that the trust rule in
:mod:`rebuildgate.decide` can be a pure function of them, and so that tests
can build them by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Artifact:
    """One package file that is about to be installed.

    ``filename`` is the name rebuilders list in their link's products
    (``hello_1.0-1_amd64.deb``, ``hello-1.0-1.fc40.noarch.rpm``): for a
    Debian package it never carries the epoch, as in the archive pool.
    ``sha256`` is what the package manager already knows (apt's
    Expected-SHA256, dnf's repository checksum) or the hash of the file.
    The other fields only locate evidence and match policy rules.
    """

    filename: str
    sha256: str
    name: str | None = None
    source: str | None = None
    version: str | None = None  # full version: "2:1.0-1" or "1:2.3-4.fc40"
    arch: str | None = None
    repo: str | None = None  # where it comes from: apt URI or dnf repo id
    sha512: str | None = None
    #: What the repository index called the package, when the file itself
    #: says otherwise (see :meth:`with_file_identity`).
    index_said: str | None = None

    @property
    def digests(self) -> dict[str, str]:
        """The strong digests we know for this artifact, by algorithm."""
        out = {"sha256": self.sha256.lower()}
        if self.sha512:
            out["sha512"] = self.sha512.lower()
        return out

    @property
    def upstream_version(self) -> str | None:
        """The version without its epoch, as file names and URLs carry it."""
        if self.version and ":" in self.version:
            return self.version.split(":", 1)[1]
        return self.version

    @property
    def label(self) -> str:
        """How a person names this package in a message."""
        if self.name and self.version:
            arch = f" ({self.arch})" if self.arch else ""
            return f"{self.name} {self.version}{arch}"
        return self.filename

    @property
    def identity(self) -> tuple[str | None, str | None, str | None, str | None]:
        """(name, version, source, arch): what halts and the allowlist judge."""
        return (self.name, self.version, self.source or self.name, self.arch)

    def with_file_identity(self, file: "Artifact") -> "Artifact":
        """This artifact under the name, version, source and arch that the
        package *file* states (its control file or rpm header).

        The index's words are an attacker's: they may add an epoch, drop a
        ``Source:`` or rename the package so that a halt or an allowlist
        entry matches or misses.  Evidence is still looked up as the index
        said (it is bound to the hash either way), but who the package is
        comes from the file.  ``index_said`` keeps the index's claim when it
        differs, so the verdict can say that the index lied.  The file name
        rebuilders list becomes the file's canonical one too (the digests
        must match under it either way).
        """
        if file.identity == self.identity:
            return self
        claim = f"{self.label}, source {self.source or self.name}"
        return replace(self, filename=file.filename, name=file.name, version=file.version, source=file.source,
                       arch=file.arch, index_said=claim)


@dataclass(frozen=True)
class SignedLink:
    """A rebuilder's link (or in-toto Statement) whose signature verified with a trusted key.

    ``products`` maps each product path to its digests (algorithm -> hex);
    for a Statement they are its subjects, as (name, digests) pairs.
    Only documents that passed the signature check become a SignedLink;
    everything else is an :class:`~rebuildgate.errors.EvidenceError`.
    """

    rebuilder: str
    keyid: str  # the trusted key that verified it
    products: Mapping[str, Mapping[str, str]] | tuple[tuple[str, Mapping[str, str]], ...]
    step: str = ""  # the link's step name, or a Statement's predicate type
    source: str = ""  # URL or path it came from, for messages

    def artifacts(self) -> Iterable[tuple[str, Mapping[str, str]]]:
        """Every (path, digests) pair the document attests.

        A link's products are a mapping, but a Statement's subjects are a
        list that may name one file twice with two digests; such a document
        must be judged on both entries, so it stays a list of pairs.
        """
        if isinstance(self.products, Mapping):
            return self.products.items()
        return self.products


@dataclass(frozen=True)
class Problem:
    """Why one rebuilder gave no usable evidence; ``kind`` is machine-readable."""

    kind: str  # missing | fetch-error | malformed | unsigned | bad-signature | unknown-key | ...
    message: str


@dataclass(frozen=True)
class RebuilderReport:
    """Everything one rebuilder gave for one artifact.

    A rebuilder may publish several documents (merged and per-arch links);
    the valid ones are in ``links``, and each document that failed is a
    ``Problem``.  No links and no problems means "nothing published".
    """

    rebuilder: str
    links: tuple[SignedLink, ...] = ()
    problems: tuple[Problem, ...] = field(default_factory=tuple)
