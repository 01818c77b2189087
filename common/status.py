"""``rebuildgate status``: how much of this system the rebuilders vouch for,
and what another threshold would block.

The installed packages (:mod:`rebuildgate.installed`: each with the exact
file it came from, or unknown) go through one :class:`~rebuildgate.verify.Verifier`
batch under the policy.  Nothing here counts a vote: each package's
evidence is taken from the batch as :class:`~rebuildgate.verify.DecisionInputs`
and judged by :func:`rebuildgate.decide.decide`, once under the policy's
rule and once per ``--what-if``, whose :class:`WhatIf` only changes the
:class:`~rebuildgate.decide.Rule` (threshold, max_conflicts, mode) and
which rebuilders' reports are handed in.  So a what-if is exactly what the
policy would say, on exactly the evidence fetched once.

Status is read-only: verdicts are neither written to the decision log nor
warned about, and halts are those the saved halt state holds (the last
install's), without reading a feed (:class:`SavedHaltWatch`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from .decide import Rule, Verdict, decide
from .errors import RebuildgateError
from .halt import HaltWatch
from .installed import InstalledPackage, InstalledSelection
from .model import RebuilderReport
from .policy import MODES, HaltSettings, Policy
from .verify import DecisionInputs, Verifier

#: What each installed package is, under one rule (first match wins, in this order).
UNKNOWN = "unknown"  # no file located: no verdict
HALTED = "halted"  # a halt in force blocks it, whatever the votes
NOT_GATED = "not-gated"  # its repository is not gated by the policy
CONFLICTING = "conflicting"  # more conflicts than max_conflicts
ATTESTED = "attested"  # attested by at least the threshold
FEWER = "fewer"  # attested by fewer than the threshold
CATEGORIES = (ATTESTED, FEWER, CONFLICTING, HALTED, NOT_GATED, UNKNOWN)
TITLES = {ATTESTED: "attested by >= M", FEWER: "attested by fewer", CONFLICTING: "conflicting",
          HALTED: "halted", NOT_GATED: "not gated", UNKNOWN: "unknown"}
#: The ``--what-if`` keys and what each takes.
WHAT_IF_KEYS = {
    "threshold": "an integer >= 1",
    "max_conflicts": "an integer >= 0",
    "mode": "enforce or audit",
    "rebuilders": "rebuilder names joined by '+': only their evidence counts",
    "without": "rebuilder names joined by '+': their evidence does not count",
}


class WhatIfError(RebuildgateError):
    """A ``--what-if`` that cannot be applied (a usage error: exit 2)."""


@dataclass(frozen=True)
class WhatIf:
    """Another rule to judge the same evidence by.

    A value given replaces the value of whichever rule governs a package
    (the global one or its ``[[repository]]`` rule).  ``rebuilders`` is the
    set whose reports count; a rebuilder the policy does not ask for a
    package was never fetched for it and cannot count in a what-if either.
    """

    text: str
    threshold: int | None = None
    max_conflicts: int | None = None
    mode: str | None = None
    rebuilders: frozenset[str] | None = None

    def rule(self, rule: Rule) -> Rule:
        operators = rule.operators
        if self.rebuilders is not None:
            operators = {name: op for name, op in rule.operators.items() if name in self.rebuilders}
        return replace(rule,
                       threshold=rule.threshold if self.threshold is None else self.threshold,
                       max_conflicts=rule.max_conflicts if self.max_conflicts is None else self.max_conflicts,
                       mode=self.mode or rule.mode, operators=operators)

    def reports(self, reports: Sequence[RebuilderReport]) -> tuple[RebuilderReport, ...]:
        if self.rebuilders is None:
            return tuple(reports)
        return tuple(r for r in reports if r.rebuilder in self.rebuilders)

    def judge(self, inputs: DecisionInputs) -> Verdict:
        """The verdict under this rule: the policy's own :func:`decide`, on the same evidence."""
        return decide(inputs.artifact, self.rule(inputs.rule), self.reports(inputs.reports))


def parse_what_if(text: str, policy: Policy) -> WhatIf:
    """``threshold=2,max_conflicts=0,mode=enforce,rebuilders=rb1+rb2`` (or ``without=rb3``)."""
    values: dict[str, str] = {}
    for item in text.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key or not value:
            raise WhatIfError(f"--what-if {text!r}: {item.strip()!r} is not KEY=VALUE "
                              f"(keys: {', '.join(WHAT_IF_KEYS)})")
        if key not in WHAT_IF_KEYS:
            raise WhatIfError(f"--what-if {text!r}: unknown key {key!r} (keys: {', '.join(WHAT_IF_KEYS)})")
        if key in values:
            raise WhatIfError(f"--what-if {text!r}: {key} is given twice")
        values[key] = value
    if "rebuilders" in values and "without" in values:
        raise WhatIfError(f"--what-if {text!r}: give rebuilders or without, not both")
    threshold = _integer(text, values, "threshold", 1)
    max_conflicts = _integer(text, values, "max_conflicts", 0)
    mode = values.get("mode")
    if mode is not None and mode not in MODES:
        raise WhatIfError(f"--what-if {text!r}: mode must be {' or '.join(MODES)}, not {mode!r}")
    known = [rb.name for rb in policy.rebuilders]
    chosen: frozenset[str] | None = None
    for key in ("rebuilders", "without"):
        if key in values:
            names = [n.strip() for n in values[key].split("+") if n.strip()]
            unknown = [n for n in names if n not in known]
            if unknown or not names:
                raise WhatIfError(f"--what-if {text!r}: {key}: {', '.join(unknown) or 'no name'} is not a rebuilder "
                                  f"of the policy ({', '.join(known)})")
            chosen = frozenset(names) if key == "rebuilders" else frozenset(known) - frozenset(names)
    operators = len({rb.identity for rb in policy.rebuilders if chosen is None or rb.name in chosen})
    effective = threshold if threshold is not None else policy.threshold
    if effective > operators:
        raise WhatIfError(f"--what-if {text!r}: threshold {effective} is more than the {operators} independent "
                          f"operator(s) of the rebuilders that would count")
    return WhatIf(text, threshold, max_conflicts, mode, chosen)


def _integer(text: str, values: Mapping[str, str], key: str, minimum: int) -> int | None:
    if key not in values:
        return None
    try:
        number = int(values[key])
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise WhatIfError(f"--what-if {text!r}: {key} must be an integer >= {minimum}, not {values[key]!r}")
    return number


def category(verdict: Verdict | None, gated: bool = True) -> str:
    """Which line of the summary a verdict counts in (it reads the verdict; it decides nothing)."""
    if verdict is None:
        return UNKNOWN
    if any(not h.overridden for h in verdict.halts):
        return HALTED
    if not gated:
        return NOT_GATED
    if verdict.conflict_count > verdict.max_conflicts:
        return CONFLICTING
    return ATTESTED if verdict.accepted else FEWER


@dataclass(frozen=True)
class Judgement:
    """One installed package under one rule; ``verdict`` is None when its file is unknown."""

    package: InstalledPackage
    verdict: Verdict | None
    category: str

    @property
    def meets_policy(self) -> bool:
        """Would the package manager let this file in (rule, halts, audit mode, allowlist)?"""
        return self.verdict is not None and self.verdict.allowed

    @property
    def fails_rule(self) -> bool:
        """Blocked by the rule, whether or not audit mode or the allowlist lets it through."""
        return self.verdict is None or not self.verdict.accepted


@dataclass(frozen=True)
class Coverage:
    """What one rebuilder's evidence did for the installed packages."""

    rebuilder: str
    attests: int  # packages it votes for
    alone: tuple[str, ...]  # packages no other rebuilder votes for (labels)
    conflicts: int  # packages it gives another digest
    errors: int  # packages its evidence failed for (fetch errors, bad signatures...)
    missing: int  # packages it published nothing for


@dataclass(frozen=True)
class Scenario:
    """Every installed package judged under one rule: the policy's, or a what-if."""

    what_if: WhatIf | None
    judgements: tuple[Judgement, ...]
    rebuilders: tuple[str, ...]  # whose evidence counts, in the policy's order

    @property
    def title(self) -> str:
        return "policy" if self.what_if is None else self.what_if.text

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(CATEGORIES, 0)
        for j in self.judgements:
            out[j.category] += 1
        return out

    @property
    def meeting(self) -> int:
        return sum(j.meets_policy for j in self.judgements)

    @property
    def failing(self) -> list[Judgement]:
        """Packages that fail the rule (let through by a relaxation or not), and unknown ones."""
        return [j for j in self.judgements if j.fails_rule]

    def coverage(self) -> list[Coverage]:
        attests: dict[str, int] = dict.fromkeys(self.rebuilders, 0)
        alone: dict[str, list[str]] = {name: [] for name in self.rebuilders}
        conflicts, errors, missing = (dict.fromkeys(self.rebuilders, 0) for _ in range(3))
        for j in self.judgements:
            v = j.verdict
            if v is None:
                continue
            voters = {vote.rebuilder for vote in v.votes}
            for name in voters & attests.keys():
                attests[name] += 1
                if len(voters) == 1:
                    alone[name].append(j.package.label)
            for tally, names in ((conflicts, {c.rebuilder for c in v.conflicts}),
                                 (errors, {name for name, _ in v.errors}), (missing, set(v.missing))):
                for name in names & tally.keys():
                    tally[name] += 1
        return [Coverage(n, attests[n], tuple(alone[n]), conflicts[n], errors[n], missing[n]) for n in self.rebuilders]


@dataclass(frozen=True)
class StatusReport:
    """The policy's scenario first, then one per ``--what-if``."""

    package_manager: str
    database: str
    policy: Policy
    halts: str  # where halts came from, for the report
    packages: tuple[InstalledPackage, ...]
    scenarios: tuple[Scenario, ...]
    warnings: tuple[str, ...] = ()  # what the package manager said while it was read

    @property
    def policy_scenario(self) -> Scenario:
        return self.scenarios[0]

    @property
    def all_meet_policy(self) -> bool:
        return all(j.meets_policy for j in self.policy_scenario.judgements)


class SavedHaltWatch(HaltWatch):
    """The halts an install would apply now, as the saved halt state holds them.

    ``status`` is read-only and must not wait on halt feeds: like
    ``check-config --explain`` it reads the state file
    (``state_dir/halts.json``), no feed, and writes nothing.  All the rest
    is :class:`~rebuildgate.halt.HaltWatch`'s own judgement (which halts
    match, overrides, a stale or unreadable state blocking everything):
    only :meth:`refresh` is replaced, by a single :meth:`HaltWatch.load_saved`.
    """

    def __init__(self, settings: HaltSettings, policy_path: Path) -> None:
        super().__init__(settings, None, policy_path)
        self._saved_lock = threading.Lock()
        self._saved_loaded = False
        self._saved_error: Exception | None = None

    def refresh(self) -> None:
        with self._saved_lock:
            if self._saved_error is not None:
                raise self._saved_error  # every verdict says so (halt-error), as after a failed refresh
            if not self._saved_loaded:
                try:
                    self.load_saved()
                except Exception as e:  # noqa: BLE001 - kept and raised per artifact
                    self._saved_error = e
                    raise
                self._saved_loaded = True


def evidence(verifier: Verifier, packages: Sequence[InstalledPackage],
             progress: Callable[[int, int], None] | None = None) -> list[DecisionInputs | None]:
    """One batch: every located package submitted at once, its evidence collected in order."""
    pending = [verifier.submit(p.artifact) if p.artifact is not None else None for p in packages]
    total = sum(item is not None for item in pending)
    out: list[DecisionInputs | None] = []
    done = 0
    for item in pending:
        out.append(item.inputs() if item is not None else None)
        if item is not None and progress is not None:
            done += 1
            progress(done, total)
    return out


def judge(packages: Sequence[InstalledPackage], inputs: Sequence[DecisionInputs | None],
          what_if: WhatIf | None, rebuilders: Sequence[str]) -> Scenario:
    """Every package under the policy's rule (``what_if`` None) or a what-if, by :func:`decide`."""
    judgements = []
    for package, item in zip(packages, inputs):
        if item is None:
            judgements.append(Judgement(package, None, UNKNOWN))
            continue
        verdict = decide(item.artifact, item.rule, item.reports) if what_if is None else what_if.judge(item)
        judgements.append(Judgement(package, verdict, category(verdict, item.rule.gated)))
    counted = [n for n in rebuilders if what_if is None or what_if.rebuilders is None or n in what_if.rebuilders]
    return Scenario(what_if, tuple(judgements), tuple(counted))


def check_installed(policy: Policy, selection: InstalledSelection, packages: Sequence[InstalledPackage],
                    what_ifs: Iterable[WhatIf] = (),
                    progress: Callable[[int, int], None] | None = None) -> StatusReport:
    """Fetch the evidence for *packages* (of *selection*) once and judge it
    under the policy and each what-if."""
    saved = SavedHaltWatch(policy.halt, policy.path) if policy.halt is not None else None
    with Verifier(policy, selection.proxy, halts=saved) as verifier:
        inputs = evidence(verifier, packages, progress)
    names = [rb.name for rb in policy.rebuilders]
    scenarios = [judge(packages, inputs, None, names)]
    scenarios += [judge(packages, inputs, w, names) for w in what_ifs]
    halts = (f"as saved in {saved.path} (no feed read now; `rebuildgate halt status` reads them)" if saved
             else "none configured")
    return StatusReport(selection.package_manager, selection.database, policy, halts, tuple(packages),
                        tuple(scenarios), selection.warnings)


__all__ = ["ATTESTED", "CATEGORIES", "CONFLICTING", "Coverage", "FEWER", "HALTED", "Judgement", "NOT_GATED",
           "SavedHaltWatch", "Scenario", "StatusReport", "TITLES", "UNKNOWN", "WhatIf", "WhatIfError",
           "check_installed", "category", "evidence", "judge", "parse_what_if"]
