"""Where apt thinks a file it hands to dpkg came from, and so whether the hook judges it.

The pre-install hook sees only a path.  What decides whether the policy
gates that file is the sources.list entry it came from, and a file is only
"from" an entry whose index lists its exact sha256: a file whose name and
version an index knows but whose bytes it does not is not that index's
file (a cached archive swapped after download, a lookalike in a plain
repository).  So, for the records apt holds for the package's name, arch and
version (:class:`~.records.IndexRecord`):

1. an index of a ``rebuildgate+`` entry lists the file's sha256: **gated**,
   judged under that repository's rule (also when a plain entry lists the
   same file: apt falls back to a plain mirror when the method refuses);
2. else an index of another entry lists it: **plain**, left alone, as the
   method never sees what plain ``http``/``https`` entries fetch;
3. else a ``rebuildgate+`` index lists this version with *another* sha256:
   **mismatch**, refused outright, as the method refuses a download whose
   bytes differ from the index (audit mode and the allowlist never relax
   apt's own integrity check: apt reuses a cached archive when only its
   size matches);
4. else the file has no source at all (``apt-get install ./x.deb``, a
   cached file no index knows): **unlisted**, judged with no repository, so
   the policy's ``gate_unlisted`` decides.

This is a pure function of what apt says; the verdict itself is the
library's, made on the identity read from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rebuildgate.repoid import apt_repo_id

from .entry import PREFIX
from .records import IndexRecord

GATED, PLAIN, MISMATCH, UNLISTED = "gated", "plain", "mismatch", "unlisted"


@dataclass(frozen=True)
class Origin:
    """How the hook treats one file; ``uri`` is the entry it came from, if any."""

    kind: str
    uri: str | None = None
    index_sha256: str | None = None  # with MISMATCH: what the index lists

    @property
    def repo(self) -> str | None:
        """The repository as the policy's ``[[repository]]`` rules see it (as the method gives it)."""
        return apt_repo_id(self.uri) if self.uri else None

    @property
    def judged(self) -> bool:
        return self.kind in (GATED, UNLISTED)


def is_gated_uri(uri: str) -> bool:
    return uri.startswith(PREFIX)


def origin_of(records: Sequence[IndexRecord], sha256: str) -> Origin:
    """Classify a file with this sha256 by the records apt holds for its name, arch and version."""
    sha256 = sha256.lower()
    listed = [r for r in records if r.uri]
    exact = [r for r in listed if r.sha256 == sha256]
    for record in exact:
        if is_gated_uri(record.uri or ""):
            return Origin(GATED, record.uri)
    if exact:
        return Origin(PLAIN, exact[0].uri)
    for record in listed:
        if is_gated_uri(record.uri or ""):
            return Origin(MISMATCH, record.uri, record.sha256)
    return Origin(UNLISTED)
