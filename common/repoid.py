"""Repository ids: the one string a package's repository is known by.

``[[repository]] match`` patterns and a halt's ``repositories`` patterns are
fnmatch patterns on this string.  A pattern written for another form of it
never matches, and a rule that never matches does not fail: the package
falls back to the global rule, which is usually weaker.  So the form is
defined here, once, every front end computes it here, and patterns are
checked against it when a policy is loaded or a halt is signed.

The id, per front end:

* **apt**: the URI of the sources.list entry the package comes from (apt
  sends it with every download as ``Target-Repo-URI``), without the
  ``rebuildgate+`` prefix, the scheme, any ``user:password@`` and the
  trailing slash.  That is the archive root exactly as the admin wrote it:
  ``deb rebuildgate+https://deb.debian.org/debian bookworm main`` gives
  ``deb.debian.org/debian``; the flat ``deb rebuildgate+http://127.0.0.1:18080/ ./``
  gives ``127.0.0.1:18080``; ``rebuildgate+file:/srv/mirror/debian`` gives
  ``/srv/mirror/debian``.  Suite and components are not part of it: they
  are not where the files come from (``pool/`` is shared by every suite),
  and one id per sources.list URI is what an admin can read off the line.
* **dnf**: the repo id, the ``[section]`` of its ``.repo`` file (dnf allows
  only letters, digits and ``-_.:`` in it), or ``@commandline`` for
  ``dnf install ./x.rpm``.
* ``rebuildgate verify --repo R``: R, one of the above; a URI is turned into
  its id by :func:`normalize`.

What no id can look like, and so what a pattern may not require: a scheme
(``https://``), whitespace, a trailing ``/``.  A pattern ``X/*`` where X is a
plain id is the classic slip (it matches repositories *below* X, never X);
it is refused unless X itself is matched by another pattern next to it.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

#: The prefix apt's sources.list gives the URIs rebuildgate's method handles.
APT_PREFIX = "rebuildgate+"
#: dnf's repo id for packages given on the command line (``dnf install ./x.rpm``).
DNF_COMMANDLINE = "@commandline"
#: The id form in one clause, for messages (which must stay one short line).
FORM = "an id is apt's sources.list URI without scheme or trailing slash, or dnf's repo id"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_URI = re.compile(_SCHEME.pattern + "/")
_INSIDE_ARCHIVE = re.compile(r"(^|/)(dists|pool)(/|$)")
_WILDCARDS = "*?["


def apt_repo_id(uri: str) -> str:
    """apt's repository id from a sources.list URI (or apt's ``Target-Repo-URI``).

    ``rebuildgate+https://user:pw@deb.debian.org/debian/`` -> ``deb.debian.org/debian``;
    ``rebuildgate+file:///srv/repo/`` -> ``/srv/repo``.  Credentials are
    dropped so that they never reach a pattern, a message or the decision log.
    Split by hand, not with urllib: any text gives an id, never an exception
    (``http://[x`` is a ValueError to urlsplit, and patterns are anybody's text).
    """
    text = uri.strip()
    scheme = _SCHEME.match(text)
    rest = text[scheme.end():] if scheme else text
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        host = authority.rpartition("@")[2]
        rest = host + slash + path if host else "/" + path  # file:///srv: no authority, the path is the id
    return rest.rstrip("/") or "/"


def apt_repo_id_from_file_uri(uri: str) -> str:
    """The id when apt did not send ``Target-Repo-URI`` (apt 2.6 always does).

    The archive root is the part of the file's URI before ``/pool/``, or the
    file's directory for a flat repository (``URI/./name.deb``).
    """
    full = apt_repo_id(uri)
    cut = full.find("/pool/")
    root = full[:cut] if cut >= 0 else posixpath.dirname(full)
    while root.endswith("/."):
        root = root[:-2]
    return root or "/"


def dnf_repo_id(reponame: str) -> str:
    """dnf's repository id is the repo id dnf gives the package (``pkg.reponame``), unchanged."""
    return reponame


def is_uri(text: str) -> bool:
    """Does *text* start with a scheme (``https:/``, ``rebuildgate+file:/``)?

    A dnf repo id may hold ``:`` but never ``/``; an apt id's ``host:port``
    is followed by digits, not ``/``.
    """
    return _URI.match(text) is not None


def normalize(text: str) -> str:
    """A repository as a person types it (an id, or a URI from sources.list) -> its id."""
    text = text.strip()
    if is_uri(text):
        return apt_repo_id(text)
    return text.rstrip("/") or text


def is_literal(pattern: str) -> bool:
    """A pattern without fnmatch wildcards matches exactly one string: itself."""
    return not any(c in pattern for c in _WILDCARDS)


def matches(repo_id: str | None, pattern: str) -> bool:
    """Does *pattern* (fnmatch, case-sensitive) match *repo_id*?  No id matches nothing."""
    return bool(repo_id) and fnmatch.fnmatchcase(repo_id, pattern)  # type: ignore[arg-type]


def intended(pattern: str) -> tuple[str, ...]:
    """What a pattern was meant to match, written in the id form.

    Whitespace and control characters go, a URI becomes its id, trailing
    slashes go, and ``X/*`` (X a plain id) also means X itself.  The result
    always includes the cleaned pattern; for a pattern that needed no
    repair it is ``(pattern,)``, or ``(X, X/*)`` for ``X/*``.
    """
    cleaned = "".join(ch for ch in pattern if ch.isprintable() and not ch.isspace())
    if is_uri(cleaned):
        cleaned = apt_repo_id(cleaned)
    if cleaned.strip("/"):
        cleaned = cleaned.rstrip("/")
    prefix = cleaned[:-2]
    if cleaned.endswith("/*") and prefix and is_literal(prefix):
        return (prefix, cleaned)
    return (cleaned,)


def matches_intended(repo_id: str | None, patterns: Iterable[str]) -> bool:
    """Does any of *patterns*, or what it was meant to say (:func:`intended`), match?

    Used for halts: a signed halt cannot be fixed by the local admin, and a
    brake that misses is worse than one that catches what its signers named.
    """
    return any(matches(repo_id, p) or any(matches(repo_id, q) for q in intended(p)) for p in patterns)


def covers(earlier: str, later: str) -> bool:
    """Does every id *later* matches also match *earlier*?

    Decided for the cases that make a first-match-wins rule dead: the same
    pattern, a literal *later* that *earlier* matches, and *earlier* being
    a literal prefix followed by ``*`` (``*`` alone included).  False means
    "not shown", not "no".
    """
    if earlier == later:
        return True
    if is_literal(later):
        return fnmatch.fnmatchcase(later, earlier)
    head = earlier[:-1]
    return earlier.endswith("*") and is_literal(head) and later.startswith(head)


@dataclass(frozen=True)
class Finding:
    """Something wrong with one pattern.  ``error``: no id of the documented
    form can match it (or it misses the id it names); else a warning."""

    pattern: str
    error: bool
    problem: str
    suggestions: tuple[str, ...] = ()

    def message(self) -> str:
        """One line: the problem and the fix first (messages are cut at 400
        characters), then what an id looks like."""
        text = f"pattern {self.pattern!r} {self.problem}"
        if self.suggestions:
            text += "; did you mean " + ", or ".join(self.suggestions) + "?"
        return text + (f" ({FORM})" if self.error else "")


def _archive_root(pattern: str) -> str:
    """``host/debian/dists/bookworm`` -> ``host/debian``: where an apt id stops."""
    found = _INSIDE_ARCHIVE.search(pattern)
    return pattern[:found.start()] if found and found.start() > 0 else pattern


def _suggest(pattern: str) -> tuple[str, ...]:
    root = _archive_root(pattern)
    if root != pattern:
        return (repr(intended(root)[0]),)
    fixed = intended(pattern)
    if len(fixed) == 2:
        plain, below = fixed
        return (repr(plain), f"[{plain!r}, {below!r}] to include those below")
    return tuple(repr(f) for f in fixed if f and f != pattern)


def check_pattern(pattern: str, others: Sequence[str] = ()) -> Finding | None:
    """The problem with *pattern*, if any; *others* are the patterns beside it
    (the same rule or halt, and earlier rules), which may match what it misses."""
    wrong = []
    if any(ch.isspace() or not ch.isprintable() for ch in pattern):
        wrong.append("contains whitespace or a control character")
    if is_uri(pattern):
        wrong.append("is a URI (ids have no scheme)")
    elif pattern.endswith("/") and pattern.strip("/"):
        wrong.append("ends with '/'")
    if wrong:
        return Finding(pattern, True, f"can never match a repository id: it {' and '.join(wrong)}",
                       _suggest(pattern))
    prefix = pattern[:-2]
    if pattern.endswith("/*") and prefix and is_literal(prefix):
        if not any(matches(prefix, other) for other in others if other != pattern):
            return Finding(pattern, True, f"misses the repository {prefix!r} itself (it matches only "
                           "repositories below it)", _suggest(pattern))
        return None
    if _INSIDE_ARCHIVE.search(pattern):
        return Finding(pattern, False, "names a path inside an archive (dists/, pool/); an apt repository id "
                       "stops at the archive root, so it only matches a sources.list URI that deep",
                       _suggest(pattern))
    return None


def check_patterns(patterns: Sequence[str], earlier: Sequence[str] = ()) -> list[Finding]:
    """:func:`check_pattern` for each of *patterns*, each seen beside the others and *earlier*."""
    context = (*patterns, *earlier)
    return [f for p in patterns if (f := check_pattern(p, context)) is not None]
