"""The trust rule: evidence in, verdict out.  No I/O happens here.

The rule, in full:

1. A **vote** is a link that verified with a key the policy gives to that
   rebuilder (signature checks happen before this module; it only ever sees
   :class:`~rebuildgate.model.SignedLink`) and whose products name the
   artifact's file with a strong digest (sha256 or sha512) equal to the
   artifact's.  Products that name other files are ignored: one link may
   cover a whole source package or several architectures.  An in-toto
   Statement of a predicate type the policy accepts for that rebuilder is
   such a link, its subjects being the products.
2. A **conflict** is such a link that gives the artifact's file a *different*
   strong digest.  It is the signal of a targeted backdoor (or of an
   unreproducible build), so it is counted and reported on its own.  A
   rebuilder that signs both a matching and a different digest is a
   conflict, never a vote.
3. A product that only carries weak digests (md5, sha1, ...) neither votes
   nor conflicts: it cannot bind the file.
4. Votes count **identities**, not rebuilders: rebuilders with the same
   ``operator`` count once, and so do rebuilders whose links verified with
   the same key (a Sybil that configures one key twice gains nothing).
   Conflicts are counted the same way.
5. The artifact is **accepted** when ``votes >= threshold`` and
   ``conflicts <= max_conflicts``; otherwise it is **blocked**.  Missing
   evidence, fetch errors, bad signatures, unknown keys and malformed
   documents never vote; each is reported as what it is.
6. Only the admin relaxes a block: a matching, unexpired allowlist entry or
   ``mode = "audit"`` lets a blocked artifact through (``allowed``), and the
   verdict says which relaxation applied (``relaxed_by``) so the front end
   can show and log it.  An ungated repository is allowed without evidence,
   and says so.
7. A halt in force for the artifact blocks it whatever the votes, unless the
   admin overrode that halt; audit mode, the allowlist and an ungated
   repository do not lift a halt (a halt is a deliberate, signed decision
   of K developers), and halts that could not be evaluated count as one.
   An override that lets an artifact through is a relaxation like the others
   (``relaxed_by`` names it).
8. Halts and the allowlist judge the package by what the package **file**
   says it is (name, version with epoch, source), whenever the file is at
   hand: a repository index may lie about all three.  When the index's
   words differ from the file's, the verdict says so (``index_said``); the
   votes do not change, since they bind the hash, not the name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import one_line
from .model import Artifact, Problem, RebuilderReport, SignedLink

#: Digest algorithms strong enough to bind a file.  Anything else is ignored.
STRONG_ALGORITHMS = ("sha256", "sha512")

ACCEPTED = "accepted"
BLOCKED = "blocked"


@dataclass(frozen=True)
class Rule:
    """What the policy demands of one artifact (resolved for its repository)."""

    threshold: int
    max_conflicts: int = 0
    mode: str = "enforce"  # "enforce" or "audit"
    operators: Mapping[str, str] = field(default_factory=dict)  # rebuilder -> operator
    gated: bool = True
    allowlisted: str | None = None  # why an allowlist entry lets it through
    halts: tuple["HaltNotice", ...] = ()


@dataclass(frozen=True)
class HaltNotice:
    """A halt in force for the artifact, as :mod:`rebuildgate.halt` found it.

    ``kind`` is ``"halt"`` for a statement K signers signed, ``"brake"`` for
    the policy's own brake (halt feeds stale, halt state unsaved or invalid,
    halts that could not be evaluated): the latter are not anyone's halt and
    are worded as what they are.
    """

    id: str
    reason: str
    signers: tuple[str, ...]
    overridden: str | None = None  # the admin's recorded override, if any
    kind: str = "halt"

    def describe(self) -> str:
        if self.kind == "halt":
            return f"halted by {self.id} ({self.reason}; signed by {_join(self.signers)})"
        return self.reason


@dataclass(frozen=True)
class Vote:
    """One rebuilder's say on the artifact."""

    rebuilder: str
    keyid: str
    source: str


@dataclass(frozen=True)
class Conflict:
    """A validly signed link that gives the artifact another digest."""

    rebuilder: str
    keyid: str
    algorithm: str
    digest: str
    source: str


@dataclass(frozen=True)
class Verdict:
    """The decision on one artifact, with everything needed to explain it."""

    artifact: Artifact
    verdict: str  # ACCEPTED or BLOCKED, by the rule alone
    allowed: bool  # may the package manager go on (after relaxations)
    mode: str
    threshold: int
    max_conflicts: int
    vote_count: int
    votes: tuple[Vote, ...]
    conflict_count: int
    conflicts: tuple[Conflict, ...]
    missing: tuple[str, ...]
    errors: tuple[tuple[str, Problem], ...]
    reason: str
    relaxed_by: str | None = None
    halts: tuple[HaltNotice, ...] = ()
    unlogged: str | None = None  # why the decision log line of this verdict was lost, if it was

    @property
    def accepted(self) -> bool:
        return self.verdict == ACCEPTED

    def summary(self) -> str:
        """One line for a person: package, outcome, and why."""
        state = self.verdict
        if self.relaxed_by and not self.accepted:
            state = f"blocked, allowed by {self.relaxed_by}"
        elif self.relaxed_by:
            state = f"accepted past {self.relaxed_by}"
        return one_line(f"{self.artifact.label}: {state}: {self.reason}", 4000)

    def to_json(self) -> dict:
        """The machine-readable form printed by ``rebuildgate verify --json``."""
        a = self.artifact
        return {
            "artifact": a.filename,
            "name": a.name,
            "source": a.source,
            "version": a.version,
            "arch": a.arch,
            "repo": a.repo,
            "sha256": a.sha256,
            "verdict": self.verdict,
            "allowed": self.allowed,
            "mode": self.mode,
            "threshold": self.threshold,
            "max_conflicts": self.max_conflicts,
            "vote_count": self.vote_count,
            "votes": sorted({v.rebuilder for v in self.votes}),
            "conflict_count": self.conflict_count,
            "conflicts": [
                {"rebuilder": c.rebuilder, c.algorithm: c.digest, "source": c.source}
                for c in self.conflicts
            ],
            "missing": list(self.missing),
            "errors": [
                {"rebuilder": name, "kind": p.kind, "message": p.message}
                for name, p in self.errors
            ],
            "halts": [
                {"id": h.id, "reason": h.reason, "signers": list(h.signers),
                 "overridden": h.overridden}
                for h in self.halts
            ],
            "relaxed_by": self.relaxed_by,
            "index_said": a.index_said,
            "unlogged": self.unlogged,
            "reason": self.reason,
        }


def artifact_names(artifact: Artifact) -> frozenset[str]:
    """File names under which a rebuilder may list this artifact.

    Debian pool names drop the epoch, but tools that build names from the
    full version write ``name_2:1.0_all.deb`` or its URL-quoted form
    ``name_2%3a1.0_all.deb`` (apt's archive cache does).  All spellings
    denote the same package, so all of them match.
    """
    base = unquote(artifact.filename)
    names = {artifact.filename, base}
    version = artifact.version
    if version and ":" in version and base.endswith(".deb"):
        epoch, upstream = version.split(":", 1)
        for spelling in (f"{epoch}:{upstream}", f"{epoch}%3a{upstream}", f"{epoch}%3A{upstream}", upstream):
            for candidate in list(names):
                for other in (f"{epoch}:{upstream}", upstream):
                    if f"_{other}_" in candidate:
                        names.add(candidate.replace(f"_{other}_", f"_{spelling}_", 1))
    return frozenset(names)


def _basename(path: str) -> str:
    return unquote(path.replace("\\", "/").rsplit("/", 1)[-1])


def _compare(link: SignedLink, names: frozenset[str], artifact: Artifact) -> tuple[str, str, str] | None:
    """Classify one link: ("vote"|"conflict"|"weak", algorithm, digest) or None if unrelated."""
    known = artifact.digests
    result: tuple[str, str, str] | None = None
    for path, digests in link.artifacts():
        if _basename(path) not in names and path not in names:
            continue
        if not isinstance(digests, Mapping):
            continue
        lowered: dict[str, str] = {}
        for k, v in digests.items():
            alg, value = str(k).lower(), str(v).lower()
            if lowered.setdefault(alg, value) != value and alg in known:
                # "SHA256" and "sha256" disagreeing: the link says two things about one file
                return ("conflict", alg, value if value != known[alg] else lowered[alg])
        common = [alg for alg in STRONG_ALGORITHMS if alg in lowered and alg in known]
        if not common:
            result = result or ("weak", "", "")
            continue
        for alg in common:
            if lowered[alg] != known[alg]:
                return ("conflict", alg, lowered[alg])
        result = ("vote", common[0], known[common[0]])
    return result


def votes(artifact: Artifact, links: Sequence[SignedLink]) -> bool:
    """Whether any of *links* is a vote for *artifact* (rule 1), ignoring everything else.

    The fetcher asks this of documents that came from its on-disk cache:
    one that does not vote is fetched afresh before the verdict, so that a
    stale or broken cache entry can never cost a vote.
    """
    names = artifact_names(artifact)
    return any((_compare(link, names, artifact) or ("",))[0] == "vote" for link in links)


class _Identities:
    """Union-find over rebuilders: same operator or same key -> one identity."""

    def __init__(self, names: Iterable[str], operators: Mapping[str, str]) -> None:
        self.parent: dict[str, str] = {}
        for name in names:
            self.parent.setdefault(f"rb:{name}", f"rb:{name}")
            self.union(f"rb:{name}", f"op:{operators.get(name, name)}")

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb

    def count(self, rebuilders: Iterable[str]) -> int:
        return len({self.find(f"rb:{name}") for name in rebuilders})


def _join(items: Iterable[str]) -> str:
    return ", ".join(items)


def decide(artifact: Artifact, rule: Rule, reports: Sequence[RebuilderReport]) -> Verdict:
    """Apply the rule in the module docstring to one artifact."""
    names = artifact_names(artifact)
    votes: list[Vote] = []
    conflicts: list[Conflict] = []
    missing: list[str] = []
    errors: list[tuple[str, Problem]] = []
    identities = _Identities((r.rebuilder for r in reports), rule.operators)

    for report in reports:
        mine_votes: list[Vote] = []
        mine_conflicts: list[Conflict] = []
        weak = False
        for link in report.links:
            outcome = _compare(link, names, artifact)
            if outcome is None:
                continue
            kind, alg, digest = outcome
            if kind == "vote":
                mine_votes.append(Vote(report.rebuilder, link.keyid, link.source))
            elif kind == "conflict":
                mine_conflicts.append(Conflict(report.rebuilder, link.keyid, alg, digest, link.source))
            else:
                weak = True
        for item in (*mine_votes, *mine_conflicts):
            identities.union(f"rb:{report.rebuilder}", f"key:{item.keyid}")
        if mine_conflicts:
            conflicts.extend(mine_conflicts)
        elif mine_votes:
            votes.extend(mine_votes)
        else:
            if weak:
                errors.append((report.rebuilder, Problem(
                    "weak-digest", "attests the file only with weak digests (no sha256/sha512)")))
            for problem in report.problems:
                if problem.kind == "missing":
                    continue
                errors.append((report.rebuilder, problem))
            if not weak and (not report.problems or all(p.kind == "missing" for p in report.problems)):
                missing.append(report.rebuilder)

    voters = sorted({v.rebuilder for v in votes})
    dissenters = sorted({c.rebuilder for c in conflicts})
    vote_count = identities.count(voters)
    conflict_count = identities.count(dissenters)

    counted = f"{vote_count} vote{'' if vote_count == 1 else 's'} ({rule.threshold} required)"
    if voters:
        counted += f" from {_join(voters)}"
    if not rule.gated:
        verdict, reason = ACCEPTED, "repository is not gated by the policy"
    elif vote_count >= rule.threshold and conflict_count <= rule.max_conflicts:
        verdict, reason = ACCEPTED, counted
    else:
        verdict, reason = BLOCKED, counted
    if conflicts:
        reason += (f"; {conflict_count} conflicting (max {rule.max_conflicts}): "
                   + _join(f"{c.rebuilder} attests {c.algorithm} {c.digest[:16]}" for c in conflicts))
    if missing and rule.gated:
        reason += f"; no evidence from {_join(missing)}"
    if errors and rule.gated:
        reason += "; " + _join(f"{name}: {p.kind}: {p.message}" for name, p in errors)

    if artifact.index_said:
        reason += f"; judged as the file says, not as the repository index said ({artifact.index_said})"

    halts_in_force = [h for h in rule.halts if not h.overridden]
    overridden = [h for h in rule.halts if h.overridden]
    allowed = verdict == ACCEPTED
    relaxed: list[str] = []
    if halts_in_force:
        verdict, allowed = BLOCKED, False
        reason = _join(h.describe() for h in halts_in_force) + "; " + reason
    else:
        if overridden:
            reason += "; " + _join(f"halt {h.id} overridden by admin: {h.overridden}" for h in overridden)
        if not allowed and rule.allowlisted:
            allowed = True
            relaxed.append(f"allowlist ({rule.allowlisted})")
        elif not allowed and rule.mode == "audit":
            allowed = True
            relaxed.append("audit mode")
        if allowed and overridden:  # the brake was released by the admin: as loud as audit mode
            relaxed.insert(0, "admin override of " + _join(f"halt {h.id}" for h in overridden))
    relaxed_by = "; ".join(relaxed) or None

    return Verdict(
        artifact=artifact,
        verdict=verdict,
        allowed=allowed,
        mode=rule.mode,
        threshold=rule.threshold,
        max_conflicts=rule.max_conflicts,
        vote_count=vote_count,
        votes=tuple(votes),
        conflict_count=conflict_count,
        conflicts=tuple(conflicts),
        missing=tuple(missing),
        errors=tuple(errors),
        reason=reason,
        relaxed_by=relaxed_by,
        halts=tuple(rule.halts),
    )


def failed(artifact: Artifact, rule: Rule, problem: Problem) -> Verdict:
    """A verdict for an artifact whose verification itself failed (fail closed).

    Used when something outside the per-rebuilder evidence broke (a bug, a
    deadline hit before any answer): the artifact is blocked unless the
    admin's audit mode or allowlist relaxes it.
    """
    return decide(artifact, rule, [RebuilderReport("rebuildgate", (), (problem,))])
