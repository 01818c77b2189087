"""The table of blocked packages that front ends print before anything is downloaded.

dnf's ``resolved()`` hook and apt's pre-prompt hook judge a whole
transaction in one batch and show the same table (package, sha256, votes,
conflicts, failing rebuilders, reason), so a user reads one format whatever
the package manager.  Only the package label differs (dnf prints
``name-version.arch``, apt ``name version (arch)``), hence *label*.

With *width* (apt: 80 columns, a terminal's width) the table is made to fit:
when a row does not fit on one line, each reason goes on lines of its own
under its row, and the package and failing-rebuilders columns narrow and
wrap, so a long package name or reason never runs past the edge.  Without it each row
is one line, as dnf has always printed it.
"""

from __future__ import annotations

import textwrap
from typing import Callable, Sequence

from rebuildgate.decide import Verdict
from rebuildgate.errors import one_line
from rebuildgate.model import Artifact
from rebuildgate.policy import Policy
from rebuildgate.verify import DEFAULT_LOG

#: Stands in for a hash where the core needs an Artifact but no hash is
#: compared (policy lookups, refusals): it can match no rebuilder's product.
NO_HASH = "0" * 64
HEADER = ("PACKAGE", "SHA256", "VOTES", "CONFLICTS", "FAILING REBUILDERS", "REASON")
#: Columns that may wrap when the table must fit a width (package, failing
#: rebuilders) and the narrowest each gets; the hash prefix and the counts
#: never wrap, the reason goes on lines of its own.
WRAPPING = {0: 14, 4: 12}
INDENT, GAP = 2, 2


def nevra(a: Artifact) -> str:
    """name-[epoch:]version-release.arch, as dnf prints packages."""
    return f"{a.name}-{a.version}.{a.arch}" if a.name and a.version and a.arch else a.filename


def failing_rebuilders(v: Verdict) -> list[str]:
    """Rebuilders that did not vote, each with why ("conflict", "missing", "timeout"...)."""
    out: dict[str, list[str]] = {}
    for c in v.conflicts:
        out.setdefault(c.rebuilder, []).append("conflict")
    for name in v.missing:
        out.setdefault(name, []).append("missing")
    for name, problem in v.errors:
        out.setdefault(name, []).append(problem.kind)
    return [f"{name} ({', '.join(dict.fromkeys(kinds))})" for name, kinds in out.items()]


def format_blocked(blocked: Sequence[Verdict], total: int, when: str, footer: str,
                   policy: Policy, notes: dict[tuple[str, str | None], str], *,
                   label: Callable[[Artifact], str] = nevra, width: int | None = None) -> str:
    """One line of context, the table, one line of advice (the footer and the decision log)."""
    rows = []
    for v in sorted(blocked, key=lambda v: label(v.artifact)):
        reason = v.reason
        note = notes.get((v.artifact.filename, v.artifact.repo))
        if note:
            reason = f"{note}; {reason}"
        rows.append((
            label(v.artifact),
            v.artifact.sha256[:16] if v.artifact.sha256 != NO_HASH else "-",
            f"{v.vote_count}/{v.threshold}",
            f"{v.conflict_count} (max {v.max_conflicts})",
            ", ".join(failing_rebuilders(v)) or "-",
            one_line(reason),
        ))
    head = f"rebuildgate blocked {len(blocked)} of {total} package(s) {when} (policy {policy.path}):"
    tail = f"{footer} Decision log: {policy.log or DEFAULT_LOG}"
    if width is None:
        return "\n".join([head, *_one_line_rows([HEADER, *rows]), tail])
    return "\n".join([*_wrap(head, width), *_fitted_rows([HEADER, *rows], width), *_wrap(tail, width)])


def _one_line_rows(rows: Sequence[Sequence[str]]) -> list[str]:
    """Each row on one line; the last column is never padded."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [(" " * INDENT + (" " * GAP).join(c.ljust(w) for c, w in zip(r, widths)) + " " * GAP + r[-1]).rstrip()
            for r in rows]


def _fitted_rows(rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """Rows within *width* columns.

    As one line per row when that fits.  Else the reason goes under its row
    (indented, wrapped to the full width: it is the longest cell and the one
    a person reads), and the package and failing-rebuilders columns narrow,
    widest first, their cells wrapping onto continuation lines.
    """
    plain = _one_line_rows(rows)
    if all(len(line) <= width for line in plain):
        return plain
    table = [r[:-1] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]

    def total() -> int:
        return INDENT + sum(widths) + GAP * (len(widths) - 1)

    while total() > width:
        if all(widths[i] <= WRAPPING[i] for i in WRAPPING):
            break  # as narrow as it gets; the terminal wraps what is left
        column = max((i for i in WRAPPING if widths[i] > WRAPPING[i]), key=lambda i: widths[i])
        widths[column] -= 1  # one at a time: the two columns end up balanced
    out = []
    for row in rows:
        cells = [_cell(text, w) for text, w in zip(row[:-1], widths)]
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            out.append((" " * INDENT + (" " * GAP).join(parts)).rstrip())
        indent = " " * (2 * INDENT)
        out += [indent + line for line in _cell(row[-1], width - len(indent))]
    return out


def _cell(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]
