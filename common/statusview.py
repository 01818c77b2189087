"""How ``rebuildgate status`` shows a :class:`~rebuildgate.status.StatusReport`.

Text for a person (a summary, per-rebuilder coverage, the packages that
would be blocked, and what each ``--what-if`` changes), JSON lines for a
machine (one object per package, then one summary object), and a progress
display on stderr while the evidence is fetched: one line rewritten in
place on a terminal, plain lines now and then otherwise (a log keeps them).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, TextIO

from .errors import one_line
from .installed import CACHE, INDEX, UNKNOWN
from .status import CATEGORIES, TITLES, Judgement, Scenario, StatusReport

#: Names listed in a text line before "... and N more" (JSON lists them all).
MAX_NAMES = 12


class Progress:
    """Progress of a long run on *stream* (stderr): on a terminal one line
    redrawn at most every ``redraw`` seconds; otherwise a plain line at most
    every ``interval`` seconds, and at the end."""

    def __init__(self, stream: TextIO, tty: bool | None = None, interval: float = 5.0, redraw: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, command: str = "status") -> None:
        self.stream = stream
        self.command = command  # "status", "collect": the word after "rebuildgate:"
        self.tty = stream.isatty() if tty is None else tty
        self.interval = redraw if self.tty else interval
        self.clock = clock
        self._last = float("-inf")
        self._drawn = False

    def note(self, text: str) -> None:
        """A stage of the run (always shown)."""
        self._clear()
        self.stream.write(f"rebuildgate: {self.command}: {text}\n")
        self.stream.flush()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if done < total and now - self._last < self.interval:
            return
        self._last = now
        text = f"rebuildgate: {self.command}: evidence for {done} of {total} package(s)"
        if self.tty:
            self.stream.write(f"\r\x1b[K{text}")
            self._drawn = True
            if done >= total:
                self._clear()
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False


# -- text ---------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    return [(indent + "  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]])).rstrip()
            for row in [header, *rows]]


def names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" ... and {len(items) - MAX_NAMES} more" if len(items) > MAX_NAMES else "") if items else "-"


def _rule_line(report: StatusReport) -> str:
    p = report.policy
    rules = f"; {len(p.repositories)} [[repository]] rule(s) apply where they match" if p.repositories else ""
    return (f"policy {p.path}: threshold {p.threshold}, max_conflicts {p.max_conflicts}, mode {p.mode}, rebuilders "
            f"{', '.join(rb.name for rb in p.rebuilders)}{rules}")


def _votes(j: Judgement) -> tuple[str, str]:
    v = j.verdict
    if v is None:
        return "-", "-"
    return f"{v.vote_count}/{v.threshold}", f"{v.conflict_count} (max {v.max_conflicts})"


def _why(j: Judgement) -> str:
    v = j.verdict
    if v is None:
        return f"unknown: {j.package.where}"
    if v.allowed:
        return one_line(f"allowed by {v.relaxed_by}: {v.reason}", 1000)
    return one_line(v.reason, 1000)


def blocked_table(scenario: Scenario) -> list[str]:
    rows = []
    for j in sorted(scenario.failing, key=lambda j: (CATEGORIES.index(j.category), j.package.name, j.package.arch)):
        votes, conflicts = _votes(j)
        rows.append((j.package.name, j.package.version, j.package.arch, j.package.located, TITLES[j.category],
                     votes, conflicts, _why(j)))
    return table(("PACKAGE", "VERSION", "ARCH", "FILE", "STATUS", "VOTES", "CONFLICTS", "WHY"), rows)


def _counts(scenario: Scenario, base: Scenario | None = None) -> list[str]:
    counts, before = scenario.counts(), base.counts() if base else None
    rows = []
    for key in CATEGORIES:
        delta = f" ({counts[key] - before[key]:+d})" if before and counts[key] != before[key] else ""
        rows.append((TITLES[key], f"{counts[key]}{delta}"))
    total = len(scenario.judgements)
    delta = f" ({scenario.meeting - base.meeting:+d})" if base and scenario.meeting != base.meeting else ""
    rows.append(("meet the policy", f"{scenario.meeting} of {total}{delta}"))
    return table(("", "PACKAGES"), rows)


def _coverage(scenario: Scenario) -> list[str]:
    coverage = scenario.coverage()
    rows = [(c.rebuilder, str(c.attests), str(len(c.alone)), str(c.conflicts), str(c.errors), str(c.missing))
            for c in coverage]
    lines = table(("REBUILDER", "ATTESTS", "ALONE", "CONFLICTS", "ERRORS", "NO EVIDENCE"), rows)
    lines += [f"  attested only by {c.rebuilder}: {names(c.alone)}" for c in coverage if c.alone]
    return lines


def _labels(judgements: Sequence[Judgement]) -> list[str]:
    return [j.package.label for j in judgements]


def changes(base: Scenario, other: Scenario) -> tuple[list[Judgement], list[Judgement]]:
    """(newly not meeting the policy, no longer failing it) from *base* to *other*."""
    newly = [o for b, o in zip(base.judgements, other.judgements) if b.meets_policy and not o.meets_policy]
    freed = [o for b, o in zip(base.judgements, other.judgements) if not b.meets_policy and o.meets_policy]
    return newly, freed


def render_text(report: StatusReport, only_problems: bool = False) -> list[str]:
    base = report.policy_scenario
    located = {kind: sum(p.located == kind for p in report.packages) for kind in (INDEX, CACHE, UNKNOWN)}
    lines = [f"rebuildgate status: {len(report.packages)} installed package(s) ({report.package_manager}: "
             f"{report.database})", _rule_line(report), f"halts: {report.halts}",
             f"files: {located[INDEX]} located by an index, {located[CACHE]} by a cached copy, "
             f"{located[UNKNOWN]} unknown", *(f"warning: {w}" for w in report.warnings), ""]
    lines += ["summary"] + _counts(base) + [""]
    if not only_problems:
        lines += ["coverage (installed packages each rebuilder's evidence votes for)"] + _coverage(base) + [""]
    failing = base.failing
    lines.append(f"would be blocked: {sum(not j.meets_policy for j in base.judgements)} package(s)"
                 + (f"; {len(failing) - sum(not j.meets_policy for j in failing)} more fail the rule but are "
                    "allowed by audit mode or the allowlist" if any(j.meets_policy for j in failing) else ""))
    if failing:
        lines += blocked_table(base)
    for scenario in report.scenarios[1:]:
        newly, freed = changes(base, scenario)
        lines += ["", f"what if {scenario.title} (the same evidence, judged again; nothing fetched)"]
        lines += _counts(scenario, base)
        lines.append(f"  newly blocked: {names(_labels(newly))}")
        lines.append(f"  no longer blocked: {names(_labels(freed))}")
        if not only_problems and scenario.what_if is not None and scenario.what_if.rebuilders is not None:
            lines += ["  coverage:"] + _coverage(scenario)
    return lines


# -- JSON ---------------------------------------------------------------------

def _short(j: Judgement) -> dict[str, Any]:
    v = j.verdict
    return {"category": j.category, "meets_policy": j.meets_policy,
            "verdict": v.verdict if v else None, "allowed": v.allowed if v else False,
            "vote_count": v.vote_count if v else 0, "threshold": v.threshold if v else None,
            "conflict_count": v.conflict_count if v else 0, "max_conflicts": v.max_conflicts if v else None,
            "reason": v.reason if v else f"unknown: {j.package.where}"}


def package_objects(report: StatusReport, only_problems: bool = False) -> list[dict[str, Any]]:
    """One object per package: where its file was found, its category and
    verdict under the policy, and a short verdict under each what-if."""
    out = []
    for i, package in enumerate(report.packages):
        here = [s.judgements[i] for s in report.scenarios]
        if only_problems and all(j.meets_policy for j in here):
            continue
        j = here[0]
        a = package.artifact
        out.append({
            "type": "package", "name": package.name, "version": package.version, "arch": package.arch,
            "located": package.located, "where": package.where,
            "file": a.filename if a else None, "sha256": a.sha256 if a else None, "repo": a.repo if a else None,
            "category": j.category, "meets_policy": j.meets_policy,
            "verdict": j.verdict.to_json() if j.verdict else None,
            "what_if": {s.title: _short(jw) for s, jw in zip(report.scenarios[1:], here[1:])},
        })
    return out


def _scenario_object(scenario: Scenario, base: Scenario | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "counts": scenario.counts(), "packages": len(scenario.judgements), "meets_policy": scenario.meeting,
        "would_block": [j.package.label for j in scenario.judgements if not j.meets_policy],
        "coverage": [{"rebuilder": c.rebuilder, "attests": c.attests, "alone": list(c.alone),
                      "conflicts": c.conflicts, "errors": c.errors, "missing": c.missing}
                     for c in scenario.coverage()],
    }
    if scenario.what_if is not None and base is not None:
        w = scenario.what_if
        newly, freed = changes(base, scenario)
        out.update({"what_if": w.text, "threshold": w.threshold, "max_conflicts": w.max_conflicts, "mode": w.mode,
                    "rebuilders": sorted(w.rebuilders) if w.rebuilders is not None else None,
                    "newly_blocked": _labels(newly), "no_longer_blocked": _labels(freed)})
    return out


def summary_object(report: StatusReport, exit_status: int) -> dict[str, Any]:
    base = report.policy_scenario
    return {
        "type": "summary", "package_manager": report.package_manager, "database": report.database,
        "policy": str(report.policy.path), "halts": report.halts, "warnings": list(report.warnings),
        "located": {kind: sum(p.located == kind for p in report.packages) for kind in (INDEX, CACHE, UNKNOWN)},
        **_scenario_object(base, None),
        "what_if": [_scenario_object(s, base) for s in report.scenarios[1:]],
        "exit_status": exit_status,
    }
