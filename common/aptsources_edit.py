"""``rebuildgate enable`` / ``disable``: switch apt sources to ``rebuildgate+`` and back.

An entry is switched by putting ``rebuildgate+`` in front of its URI
(``deb http://deb.debian.org/debian bookworm main`` becomes ``deb
rebuildgate+http://deb.debian.org/debian bookworm main``; in a deb822
``.sources`` file, the URI in ``URIs:``), or by taking it away.  Nothing
else in a file changes: not its options, comments, spacing, order, mode or
owner, so ``disable`` gives back the file ``enable`` was given.  Entries
are chosen by repository id pattern (the ids of ``[[repository]] match``,
README "Repository ids") or URI, or all of them (``--all``).  Running it
twice changes nothing the second time.

Only the schemes rebuildgate's method wraps (``http``, ``https``, ``file``)
can be switched; ``tor+http``, ``mirror+…``, ``cdrom:`` entries are left
alone and named.  ``deb`` and ``deb-src`` entries are switched alike: the
method passes everything that is not a binary package through untouched.

Before a file is rewritten, its old content is copied to a backup directory
(``/var/lib/rebuildgate/sources-backup/<time>/``, never into
``sources.list.d``, where apt would read or warn about it).  Files are
replaced atomically: apt never reads half a file.  ``sources.list(5)``
parsing is that of :mod:`rebuildgate.aptsources`; this module only finds
where each URI stands in the text.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from . import aptsources, repoid
from .atomic import write_atomic
from .errors import RebuildgateError

PREFIX = repoid.APT_PREFIX
#: The inner schemes rebuildgate's method has (rebuildgate+http, +https, +file).
SCHEMES = ("http", "https", "file")
SOURCELIST = "etc/apt/sources.list"
SOURCEPARTS = "etc/apt/sources.list.d"
METHODS = "usr/lib/apt/methods"
BACKUPS = "var/lib/rebuildgate/sources-backup"
_WORD = re.compile(r"\S+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_URIS_FIELD = re.compile(r"^(URIs)(\s*:)", re.IGNORECASE)
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9-]*\s*:")


class SwitchError(RebuildgateError):
    """Nothing was switched (exit 2): the reason, in one line."""


@dataclass(frozen=True)
class Entry:
    """One URI of one entry, and what happens to it."""

    path: Path
    line: int  # 1-based
    uri: str
    new_uri: str | None  # None: left as it is
    status: str  # switched | already | skipped
    reason: str = ""

    def describe(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.status == "switched":
            return f"switched {where}: {self.uri} -> {self.new_uri}"
        return f"{self.status} {where}: {self.uri}" + (f" ({self.reason})" if self.reason else "")


@dataclass
class FileEdit:
    path: Path
    old: str
    new: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def diff(self) -> str:
        return "".join(difflib.unified_diff(self.old.splitlines(True), self.new.splitlines(True),
                                            f"{self.path} (now)", f"{self.path} (after)"))


@dataclass(frozen=True)
class Layout:
    """Where apt's files are: a root (``/``, or a throw-away root for tests) and apt's Dir::Etc items."""

    root: Path = Path("/")
    sourcelist: Path | None = None  # Dir::Etc::sourcelist
    sourceparts: Path | None = None  # Dir::Etc::sourceparts
    methods: Path | None = None  # Dir::Bin::Methods

    def _under(self, given: Path | None, default: str) -> Path:
        return given if given is not None else self.root / default

    @property
    def list_file(self) -> Path:
        return self._under(self.sourcelist, SOURCELIST)

    @property
    def parts_dir(self) -> Path:
        return self._under(self.sourceparts, SOURCEPARTS)

    @property
    def methods_dir(self) -> Path:
        return self._under(self.methods, METHODS)

    @property
    def backups(self) -> Path:
        return self.root / BACKUPS

    def files(self) -> list[Path]:
        """sources.list, then sources.list.d's ``*.list`` and ``*.sources`` in apt's (name) order."""
        found = [self.list_file] if self.list_file.is_file() else []
        if self.parts_dir.is_dir():
            found += sorted(p for p in self.parts_dir.iterdir()
                            if p.suffix in (".list", ".sources") and p.is_file())
        return found


def selector(patterns: Sequence[str], everything: bool):
    """A test on a URI (without ``rebuildgate+``): does the admin want it switched?

    A pattern is a repository id pattern (fnmatch, as in ``[[repository]]
    match``) or a URI, which is turned into its id.
    """
    wanted = [repoid.normalize(p) for p in patterns]

    def chosen(uri: str) -> bool:
        return everything or any(repoid.matches(repoid.apt_repo_id(uri), p) for p in wanted)

    return chosen


def _uris_one_line(text: str) -> Iterator[tuple[int, int, int]]:
    """(line number, start, end) of the URI of every entry of a one-line-style file."""
    offset = 0
    for number, line in enumerate(text.splitlines(True), 1):
        code = line.split("#", 1)[0]
        words = list(_WORD.finditer(code))
        if words and words[0].group() in aptsources.TYPES:
            rest = words[1:]
            if rest and rest[0].group().startswith("["):
                while rest and not rest[0].group().endswith("]"):
                    rest = rest[1:]
                rest = rest[1:]
            if rest:
                yield number, offset + rest[0].start(), offset + rest[0].end()
        offset += len(line)


def _uris_deb822(text: str) -> Iterator[tuple[int, int, int]]:
    """(line number, start, end) of every URI in the ``URIs:`` fields of a ``.sources`` file."""
    offset = 0
    inside = False
    for number, line in enumerate(text.splitlines(True), 1):
        body = line.rstrip("\n")
        start = None
        if body.lstrip().startswith("#"):
            pass  # a comment line, also inside a field
        elif (found := _URIS_FIELD.match(body)) is not None:
            inside, start = True, found.end()
        elif _FIELD.match(body) or not body.strip():
            inside = False
        elif inside and body[:1].isspace():
            start = 0  # a continuation line of URIs:
        if start is not None:
            for word in _WORD.finditer(body, start):
                yield number, offset + word.start(), offset + word.end()
        offset += len(line)


def plan_file(path: Path, text: str, enable: bool, chosen) -> FileEdit:
    """What switching the chosen entries of one file gives (nothing written)."""
    finder = _uris_deb822 if path.suffix == ".sources" else _uris_one_line
    edit = FileEdit(path, text, text)
    pieces, last = [], 0
    for number, start, end in finder(text):
        uri = text[start:end]
        gated = uri.startswith(PREFIX)
        inner = uri[len(PREFIX):] if gated else uri
        if not chosen(inner):
            continue
        new = None
        if enable and gated:
            entry = Entry(path, number, uri, None, "already")
        elif not enable and not gated:
            entry = Entry(path, number, uri, None, "already", "not through rebuildgate")
        elif enable:
            scheme = _SCHEME.match(inner)
            kind = scheme.group(1).lower() if scheme else ""
            if kind in SCHEMES:
                new = PREFIX + inner
                entry = Entry(path, number, uri, new, "switched")
            else:
                entry = Entry(path, number, uri, None, "skipped",
                              f"rebuildgate's method wraps {', '.join(SCHEMES)} only, not {kind or 'this'}")
        else:
            new = inner
            entry = Entry(path, number, uri, new, "switched")
        edit.entries.append(entry)
        if new is not None:
            pieces += [text[last:start], new]
            last = end
    edit.new = "".join(pieces) + text[last:]
    return edit


def plan(layout: Layout, enable: bool, patterns: Sequence[str], everything: bool) -> list[FileEdit]:
    """Every file's edit; raises SwitchError if no entry is chosen at all."""
    if not patterns and not everything:
        raise SwitchError("say which sources: one or more repository ids / URIs (patterns allowed), or --all")
    chosen = selector(patterns, everything)
    edits = []
    for path in layout.files():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise SwitchError(f"cannot read {path}: {e}") from None
        edits.append(plan_file(path, text, enable, chosen))
    if not any(e.entries for e in edits):
        where = ", ".join(str(p) for p in layout.files()) or f"{layout.list_file} and {layout.parts_dir}"
        what = "no entry at all" if everything else f"no entry matches {', '.join(map(repr, patterns))}"
        raise SwitchError(f"{what} in {where}; nothing was switched")
    return edits


def unmatched(edits: Sequence[FileEdit], patterns: Sequence[str]) -> list[str]:
    """Patterns that chose no entry (a typo, probably)."""
    uris = [e.uri[len(PREFIX):] if e.uri.startswith(PREFIX) else e.uri for f in edits for e in f.entries]
    return [p for p in patterns if not any(selector([p], False)(u) for u in uris)]


def check_method(layout: Layout) -> None:
    """Switching a source to a method that is not installed would break ``apt-get update``."""
    missing = [f"{PREFIX}{s}" for s in SCHEMES if not (layout.methods_dir / f"{PREFIX}{s}").exists()]
    if missing:
        raise SwitchError(f"the APT method {layout.methods_dir}/{missing[0]} is not installed (install the "
                          f"rebuildgate package first); nothing was switched")


def apply(edits: Sequence[FileEdit], layout: Layout, now: _dt.datetime | None = None) -> Path | None:
    """Back up every file that changes, then replace each one atomically; return the backup directory."""
    changed = [e for e in edits if e.changed]
    if not changed:
        return None
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = layout.backups / stamp
    for edit in changed:
        try:
            relative = edit.path.resolve().relative_to(layout.root.resolve())
        except ValueError:
            relative = Path(*edit.path.resolve().parts[1:])
        target = backup / relative
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(edit.path, target)
    layout.backups.chmod(0o700)
    for edit in changed:
        st = edit.path.stat()
        write_atomic(edit.path, edit.new.encode(), st.st_mode & 0o7777)
        if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(edit.path, st.st_uid, st.st_gid)
    return backup


def gated_entries(layout: Layout) -> list[Entry]:
    """Every entry that goes through rebuildgate now (prerm refuses removal while there is one)."""
    found = []
    for edit in plan_quiet(layout):
        found += [e for e in edit.entries if e.status == "switched"]
    return found


def plan_quiet(layout: Layout) -> list[FileEdit]:
    """``disable --all`` as a plan, without raising when nothing is gated."""
    out = []
    for path in layout.files():
        try:
            out.append(plan_file(path, path.read_text(), False, selector((), True)))
        except (OSError, UnicodeDecodeError):
            continue
    return out
