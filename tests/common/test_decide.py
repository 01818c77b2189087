"""The M-of-N rule, exhaustively: rebuildgate.decide is pure, so test it hard."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebuildgate.decide import ACCEPTED, BLOCKED, HaltNotice, Rule, artifact_names, decide
from rebuildgate.model import Artifact, Problem, RebuilderReport, SignedLink

GOOD = hashlib.sha256(b"good").hexdigest()
EVIL = hashlib.sha256(b"evil").hexdigest()
GOOD512 = hashlib.sha512(b"good").hexdigest()
FILE = "hello_1.0-1_amd64.deb"
ART = Artifact(FILE, GOOD, name="hello", source="hello-src", version="1.0-1", arch="amd64", sha512=GOOD512)


def link(rb: str, digests: dict[str, str] | None = None, path: str = FILE, key: str | None = None) -> SignedLink:
    return SignedLink(rb, key or f"key-{rb}", {path: digests if digests is not None else {"sha256": GOOD}})


def vote(rb: str, **kw) -> RebuilderReport:
    return RebuilderReport(rb, (link(rb, **kw),))


def conflict(rb: str) -> RebuilderReport:
    return RebuilderReport(rb, (link(rb, {"sha256": EVIL}),))


def missing(rb: str) -> RebuilderReport:
    return RebuilderReport(rb, (), (Problem("missing", "404"),))


def broken(rb: str, kind: str = "bad-signature") -> RebuilderReport:
    return RebuilderReport(rb, (), (Problem(kind, "nope"),))


# --- basic counting ---------------------------------------------------------

@pytest.mark.parametrize("threshold", [1, 2, 3])
@pytest.mark.parametrize("n_votes", [0, 1, 2, 3])
def test_accepts_exactly_when_votes_reach_threshold(threshold: int, n_votes: int) -> None:
    reports = [vote(f"rb{i}") for i in range(n_votes)] + [missing(f"m{i}") for i in range(3 - n_votes)]
    v = decide(ART, Rule(threshold=threshold), reports)
    assert v.vote_count == n_votes
    assert v.accepted is (n_votes >= threshold)
    assert v.allowed is v.accepted
    assert v.verdict == (ACCEPTED if n_votes >= threshold else BLOCKED)


@pytest.mark.parametrize("max_conflicts", [0, 1, 2])
@pytest.mark.parametrize("n_conflicts", [0, 1, 2, 3])
def test_conflicts_block_beyond_max(max_conflicts: int, n_conflicts: int) -> None:
    reports = [vote("a"), vote("b")] + [conflict(f"c{i}") for i in range(n_conflicts)]
    v = decide(ART, Rule(threshold=2, max_conflicts=max_conflicts), reports)
    assert v.conflict_count == n_conflicts
    assert v.accepted is (n_conflicts <= max_conflicts)
    if n_conflicts:
        assert "conflicting" in v.reason and "c0 attests sha256" in v.reason


def test_sha512_alone_votes_and_conflicts() -> None:
    assert decide(ART, Rule(1), [vote("a", digests={"sha512": GOOD512})]).accepted
    bad = decide(ART, Rule(1), [vote("a", digests={"sha512": "00" * 64})])
    assert not bad.accepted and bad.conflict_count == 1


def test_one_matching_and_one_mismatching_algorithm_is_a_conflict() -> None:
    v = decide(ART, Rule(1), [vote("a", digests={"sha256": GOOD, "sha512": "ab" * 64})])
    assert not v.accepted and v.conflict_count == 1 and v.vote_count == 0


def test_digest_case_does_not_matter() -> None:
    assert decide(ART, Rule(1), [vote("a", digests={"SHA256": GOOD.upper()})]).accepted


@pytest.mark.parametrize("digests", [{"md5": "0" * 32}, {"sha1": "0" * 40}, {"sha224": "0" * 56}, {}])
def test_weak_or_no_digest_never_votes(digests: dict[str, str]) -> None:
    v = decide(ART, Rule(1), [vote("a", digests=digests)])
    assert not v.accepted and v.vote_count == 0 and v.conflict_count == 0
    assert [(n, p.kind) for n, p in v.errors] == [("a", "weak-digest")]


def test_unrelated_products_are_ignored() -> None:
    other = SignedLink("a", "k", {"hello-doc_1.0-1_all.deb": {"sha256": EVIL}, FILE: {"sha256": GOOD}})
    assert decide(ART, Rule(1), [RebuilderReport("a", (other,))]).accepted
    only_other = SignedLink("b", "k2", {"hello_1.0-2_amd64.deb": {"sha256": GOOD}})
    v = decide(ART, Rule(1), [RebuilderReport("b", (only_other,))])
    assert not v.accepted and v.missing == ("b",)


def test_product_paths_match_by_basename() -> None:
    assert decide(ART, Rule(1), [vote("a", path=f"build/out/{FILE}")]).accepted


def test_rebuilder_with_vote_and_conflict_counts_as_conflict_only() -> None:
    r = RebuilderReport("a", (link("a"), link("a", {"sha256": EVIL})))
    v = decide(ART, Rule(1), [r])
    assert v.vote_count == 0 and v.conflict_count == 1 and not v.accepted


def test_several_links_of_one_rebuilder_count_once() -> None:
    r = RebuilderReport("a", (link("a"), link("a", path=f"x/{FILE}")))
    v = decide(ART, Rule(2), [r])
    assert v.vote_count == 1 and not v.accepted


# --- Sybil: operators and shared keys ---------------------------------------

def test_same_operator_counts_once() -> None:
    rule = Rule(threshold=2, operators={"a": "org", "b": "org", "c": "other"})
    assert not decide(ART, rule, [vote("a"), vote("b")]).accepted
    assert decide(ART, rule, [vote("a"), vote("c")]).accepted


def test_same_key_under_two_names_counts_once() -> None:
    v = decide(ART, Rule(2), [vote("a", key="shared"), vote("b", key="shared")])
    assert v.vote_count == 1 and not v.accepted


def test_shared_key_chains_through_operators() -> None:
    # a~b by operator, b~c by key: all three are one identity.
    rule = Rule(threshold=2, operators={"a": "org", "b": "org"})
    v = decide(ART, rule, [vote("a"), vote("b", key="k"), vote("c", key="k")])
    assert v.vote_count == 1


def test_conflicts_of_one_operator_count_once() -> None:
    rule = Rule(threshold=1, max_conflicts=1, operators={"x": "org", "y": "org"})
    assert decide(ART, rule, [vote("a"), conflict("x"), conflict("y")]).accepted


# --- problems are reported as what they are ---------------------------------

def test_problems_are_reported_by_kind() -> None:
    v = decide(ART, Rule(1), [broken("a", "bad-signature"), broken("b", "unknown-key"),
                              broken("c", "fetch-error"), missing("d"), RebuilderReport("e")])
    assert not v.accepted
    assert {(n, p.kind) for n, p in v.errors} == {("a", "bad-signature"), ("b", "unknown-key"),
                                                   ("c", "fetch-error")}
    assert v.missing == ("d", "e")
    for word in ("bad-signature", "unknown-key", "fetch-error", "no evidence from d, e"):
        assert word in v.reason
    assert "\n" not in v.reason


# --- names: epochs and quoting ----------------------------------------------

def test_epoch_spellings_all_match() -> None:
    art = Artifact("hello_1.0-1_all.deb", GOOD, name="hello", version="2:1.0-1", arch="all")
    names = artifact_names(art)
    assert {"hello_1.0-1_all.deb", "hello_2:1.0-1_all.deb", "hello_2%3a1.0-1_all.deb"} <= names
    for spelled in names:
        assert decide(art, Rule(1), [vote("a", path=spelled)]).accepted


def test_quoted_artifact_filename_matches_plain_product() -> None:
    art = Artifact("hello_2%3a1.0-1_all.deb", GOOD, version="2:1.0-1")
    assert decide(art, Rule(1), [vote("a", path="hello_1.0-1_all.deb")]).accepted


def test_epoch_does_not_leak_into_other_versions() -> None:
    art = Artifact("hello_1.0-1_all.deb", GOOD, name="hello", version="2:1.0-1")
    assert not decide(art, Rule(1), [vote("a", path="hello_1.0-2_all.deb")]).accepted


# --- relaxations and halts --------------------------------------------------

def test_audit_mode_allows_but_says_blocked() -> None:
    v = decide(ART, Rule(2, mode="audit"), [vote("a")])
    assert v.verdict == BLOCKED and v.allowed and v.relaxed_by == "audit mode"
    assert "allowed by audit mode" in v.summary()


def test_allowlist_allows_and_names_the_entry() -> None:
    v = decide(ART, Rule(2, allowlisted="hello until 2030-01-01: kernel"), [])
    assert v.verdict == BLOCKED and v.allowed and "kernel" in (v.relaxed_by or "")


def test_accepted_needs_no_relaxation() -> None:
    v = decide(ART, Rule(1, mode="audit"), [vote("a")])
    assert v.accepted and v.relaxed_by is None


def test_ungated_is_allowed_without_evidence() -> None:
    v = decide(ART, Rule(3, gated=False), [])
    assert v.accepted and "not gated" in v.reason


def test_halt_blocks_even_with_all_votes_and_in_audit_mode() -> None:
    halt = HaltNotice("H-1", "backdoor suspected", ("alice", "bob"))
    for rule in (Rule(1, halts=(halt,)), Rule(1, mode="audit", halts=(halt,)),
                 Rule(1, allowlisted="x", halts=(halt,))):
        v = decide(ART, rule, [vote("a")])
        assert v.verdict == BLOCKED and not v.allowed
        assert "H-1" in v.reason and "backdoor suspected" in v.reason and "alice, bob" in v.reason


def test_overridden_halt_lets_votes_decide_and_is_shown() -> None:
    halt = HaltNotice("H-1", "why", ("alice",), overridden="root on 2026-11-23: false alarm")
    v = decide(ART, Rule(1, halts=(halt,)), [vote("a")])
    assert v.accepted and "overridden by admin" in v.reason


def test_json_has_the_contract_fields() -> None:
    v = decide(ART, Rule(2), [vote("a"), conflict("b"), missing("c"), broken("d")])
    j = v.to_json()
    for key in ("artifact", "sha256", "verdict", "mode", "votes", "conflicts", "missing", "errors", "reason"):
        assert key in j
    assert j["verdict"] == "blocked" and j["votes"] == ["a"] and j["missing"] == ["c"]
    assert j["conflicts"][0]["rebuilder"] == "b" and j["errors"][0]["kind"] == "bad-signature"


# --- exhaustive small worlds --------------------------------------------------

KINDS = ("vote", "conflict", "missing", "bad", "weak")


def _report(rb: str, kind: str) -> RebuilderReport:
    return {"vote": vote, "conflict": conflict, "missing": missing, "bad": broken,
            "weak": lambda r: vote(r, digests={"md5": "0" * 32})}[kind](rb)


@pytest.mark.parametrize("combo", list(itertools.product(KINDS, repeat=4)))
def test_every_combination_of_four_rebuilders(combo: tuple[str, ...]) -> None:
    reports = [_report(f"rb{i}", k) for i, k in enumerate(combo)]
    votes, conflicts = combo.count("vote"), combo.count("conflict")
    for threshold in (1, 2, 3, 4):
        for max_conflicts in (0, 1):
            v = decide(ART, Rule(threshold, max_conflicts), reports)
            assert v.vote_count == votes and v.conflict_count == conflicts
            assert v.accepted is (votes >= threshold and conflicts <= max_conflicts)


# --- properties ---------------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "d", "e", "f"])
report_kind = st.sampled_from(KINDS)
worlds = st.dictionaries(names, report_kind, max_size=6)
operators = st.dictionaries(names, st.sampled_from(["o1", "o2", "o3"]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(worlds, operators, st.integers(1, 6), st.integers(0, 3), st.randoms())
def test_order_of_reports_does_not_matter(world, ops, threshold, max_conflicts, rnd) -> None:
    reports = [_report(n, k) for n, k in world.items()]
    shuffled = list(reports)
    rnd.shuffle(shuffled)
    rule = Rule(threshold, max_conflicts, operators=ops)
    a, b = decide(ART, rule, reports), decide(ART, rule, shuffled)
    assert (a.verdict, a.vote_count, a.conflict_count) == (b.verdict, b.vote_count, b.conflict_count)


@settings(max_examples=300, deadline=None)
@given(worlds, operators, st.integers(1, 6), st.integers(0, 3))
def test_accepted_means_threshold_distinct_operators_voted(world, ops, threshold, max_conflicts) -> None:
    reports = [_report(n, k) for n, k in world.items()]
    v = decide(ART, Rule(threshold, max_conflicts, operators=ops), reports)
    voting_ops = {ops.get(n, n) for n, k in world.items() if k == "vote"}
    dissent_ops = {ops.get(n, n) for n, k in world.items() if k == "conflict"}
    assert v.vote_count == len(voting_ops)
    assert v.accepted is (len(voting_ops) >= threshold and len(dissent_ops) <= max_conflicts)


@settings(max_examples=300, deadline=None)
@given(worlds, st.integers(1, 6), st.integers(0, 3), names, report_kind)
def test_monotone_in_votes_and_conflicts(world, threshold, max_conflicts, extra, kind) -> None:
    """A new vote never blocks; a new conflict never accepts."""
    if extra in world:
        return
    rule = Rule(threshold, max_conflicts)
    before = decide(ART, rule, [_report(n, k) for n, k in world.items()])
    after = decide(ART, rule, [_report(n, k) for n, k in world.items()] + [_report(extra, kind)])
    if kind == "vote" and before.accepted:
        assert after.accepted
    if kind == "conflict" and not before.accepted:
        assert not after.accepted
    if kind in ("missing", "bad", "weak"):
        assert after.accepted is before.accepted


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=30), st.dictionaries(
    st.sampled_from(["sha256", "sha512", "md5", "sha1", "SHA256"]), st.text(max_size=130), max_size=3), max_size=5))
def test_random_products_never_vote_without_the_exact_digest(products) -> None:
    reports = [RebuilderReport("a", (SignedLink("a", "k", products),))]
    v = decide(ART, Rule(1), reports)
    if v.accepted:
        matched = [d for p, d in products.items() if p.rsplit("/", 1)[-1] in artifact_names(ART)]
        assert any({k.lower(): x.lower() for k, x in d.items()}.get("sha256") == GOOD
                   or {k.lower(): x.lower() for k, x in d.items()}.get("sha512") == GOOD512 for d in matched)


@pytest.mark.parametrize("order", ["match-first", "other-first"])
def test_one_algorithm_spelled_twice_with_two_values_is_a_conflict(order) -> None:
    """Not decided by key order: a link that says two things about one file dissents."""
    pairs = [("sha256", GOOD), ("SHA256", EVIL)]
    if order == "other-first":
        pairs.reverse()
    v = decide(ART, Rule(1), [vote("a", digests=dict(pairs))])
    assert not v.accepted and v.conflict_count == 1 and v.conflicts[0].digest == EVIL
