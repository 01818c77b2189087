"""``rebuildgate check-config --explain``: what the policy does to one repository.

An admin who writes a ``[[repository]]`` rule wants to know that it applies
to the repository they mean, before a package arrives.  Given a
sources.list entry, a deb822 stanza or a repository id, this says which id
the front end will see (:mod:`rebuildgate.repoid`), which rule governs it,
with what threshold, conflicts, mode and rebuilders, and which halts stop
packages from it.

Halts are read from the saved halt state only: explaining must not wait on
the network, and the saved state is what the last install used (``rebuildgate
halt status`` reads the feeds).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import repoid
from .aptsources import AptSource, looks_like_sources, parse
from .model import Artifact
from .policy import Policy


@dataclass(frozen=True)
class Subject:
    """One repository to explain, and how it was given."""

    repo_id: str
    given: str
    source: AptSource | None = None


@dataclass(frozen=True)
class SavedHalts:
    """The halts an install would use now, as the state file remembers them."""

    path: str
    statements: tuple[Any, ...] = ()  # rebuildgate.halt.Statement
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    now: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))
    stale: str | None = None  # why every package is blocked (or warned about), if feeds are stale
    problem: str | None = None  # the state could not be read


def subjects(text: str) -> list[Subject]:
    """The repositories *text* names: sources entries, or one repository id (or URI)."""
    if looks_like_sources(text):
        return [Subject(s.repo_id, s.line, s) for s in parse(text)]
    return [Subject(repoid.normalize(text), text.strip())]


def saved_halts(policy: Policy) -> SavedHalts | None:
    """The halt state without fetching any feed; None when no ``[halt]`` is configured."""
    if policy.halt is None:
        return None
    from .halt import HaltError, HaltWatch

    watch = HaltWatch(policy.halt, None, policy.path)
    try:
        watch.load_saved()
    except HaltError as e:
        return SavedHalts(str(watch.path), problem=str(e))
    why = watch.stale_text()
    if why is not None:
        if watch.stale_override():
            why += ": overridden by the admin"
        elif policy.halt.stale == "block":
            why += (": every package is blocked until a feed is read (`rebuildgate halt refresh`; "
                    "README: Halt flags, set-up order)")
        else:
            why += ": the policy says warn"
    return SavedHalts(str(watch.path), tuple(watch.statements.values()), dict(watch.state.get("overrides", {})),
                      watch._now(), why)


def explain(policy: Policy, subject: Subject, halts: SavedHalts | None) -> list[str]:
    """Plain-words lines on what *policy* does to packages from *subject*."""
    lines = [f"repository id {subject.repo_id!r} (from {subject.given!r})"]
    lines += _front_end(subject)
    rule, pattern = policy.rule_for(subject.repo_id)
    resolution = policy.resolve(Artifact("(explain)", "0" * 64, repo=subject.repo_id))
    if rule is None:
        lines.append("  rule: no [[repository]] rule matches it: the global rule applies "
                     f"(gate_unlisted = {'true' if policy.gate_unlisted else 'false'})")
    else:
        index = policy.repositories.index(rule)
        lines.append(f"  rule: [[repository]] {rule.name} (repository[{index}]), its pattern {pattern!r} matches")
    r = resolution.rule
    if not r.gated:
        lines.append("  gated: no: packages from here are not checked against rebuilders (halts still apply)")
    else:
        operators = len({rb.identity for rb in resolution.rebuilders})
        lines.append(f"  gated: yes: threshold {r.threshold} of {operators} rebuilder operator(s), "
                     f"max_conflicts {r.max_conflicts}, mode {r.mode}")
        lines.append("  rebuilders asked: " + ", ".join(f"{rb.name} ({rb.url})" for rb in resolution.rebuilders))
    lines += _halts(subject.repo_id, halts)
    return lines


def _front_end(subject: Subject) -> list[str]:
    source = subject.source
    if source is None:
        return []
    lines = []
    if len(source.suites) > 1 or source.components:
        lines.append(f"  suites {' '.join(source.suites)} and components {' '.join(source.components) or '-'} "
                     "are not part of the id")
    if not source.enabled:
        lines.append("  apt: this entry is disabled (Enabled: no)")
    if source.type == "deb-src":
        lines.append("  apt: deb-src: source packages are not checked, only .deb files")
    elif source.through_rebuildgate:
        lines.append(f"  apt: fetched through rebuildgate's method ({source.uri.split(':', 1)[0]}): every .deb "
                     "from it is checked before apt may install it")
    else:
        scheme = source.uri.split(":", 1)[0]
        lines.append(f"  apt: NOT fetched through rebuildgate: apt uses its own {scheme} method, so rebuildgate's "
                     f"method never sees these packages (write {repoid.APT_PREFIX}{scheme}:...)")
    return lines


def _halts(repo_id: str, halts: SavedHalts | None) -> list[str]:
    if halts is None:
        return ["  halts: none configured (no [halt] section)"]
    if halts.problem:
        return [f"  halts: cannot tell: {halts.problem}; every package is blocked until it is fixed"]
    lines = [f"  halts, from the saved state {halts.path} (feeds not read now; `rebuildgate halt status` "
             "reads them):"]
    if halts.stale:
        lines.append(f"    {halts.stale}")
    from .halt import describe_override, override_applies

    found = 0
    for st in sorted(halts.statements, key=lambda s: s.id):
        if st.action != "halt" or st.expired(halts.now):
            continue
        if st.repositories and not repoid.matches_intended(repo_id, st.repositories):
            continue
        found += 1
        what = _covers(st)
        override = halts.overrides.get(st.id)
        overridden = (f"; OVERRIDDEN by {describe_override(dict(override))}"
                      if override and override_applies(override, st) else "")
        lines.append(f"    halt {st.id} v{st.version} stops {what}: {st.reason}; signed by "
                     f"{', '.join(st.signers)}{overridden}")
    if not found:
        lines.append("    none in force for this repository")
    return lines


def _covers(st: Any) -> str:
    if st.everything:
        return "every package"
    parts = []
    if st.packages:
        parts.append(f"packages {', '.join(st.packages)}")
    if st.versions:
        parts.append(f"versions {', '.join(st.versions)}")
    where = "from here" if st.repositories else "from any repository"
    return (" ".join(parts) or "every package") + " " + where
