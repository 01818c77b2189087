"""rebuildgate.status and rebuildgate.statusview: what-ifs, categories, coverage,
saved halts, the report's forms and the progress display.

The package managers' adapters are tested against real dpkg and rpm
databases in tests/apt_transport/test_status_dpkg.py and
tests/dnf_plugin/test_status_rpm.py; here the installed packages are built
by hand and the rebuilders are file:// trees, so only the core is at work.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from rebuildgate.decide import HaltNotice, Rule, decide
from rebuildgate.installed import CACHE, INDEX, NOT_IN_ANY_INDEX, UNKNOWN, InstalledPackage, InstalledSelection
from rebuildgate.model import Artifact, RebuilderReport, SignedLink
from rebuildgate.policy import load_policy
from rebuildgate.status import (ATTESTED, CONFLICTING, FEWER, HALTED, NOT_GATED, SavedHaltWatch, WhatIf, WhatIfError,
                                category, check_installed, judge, parse_what_if)
from rebuildgate.statusview import Progress, package_objects, render_text, summary_object
from rebuildgate.verify import DecisionInputs

from tests.support.halts import HaltTeam
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders


def deb(name: str, content: bytes | None = None) -> InstalledPackage:
    """An installed package located by an index, with the sha256 of *content*."""
    body = content if content is not None else name.encode()
    artifact = Artifact(f"{name}_1.0-1_all.deb", hashlib.sha256(body).hexdigest(), name=name, source=name,
                        version="1.0-1", arch="all", repo="deb.example/debian")
    return InstalledPackage(name, "1.0-1", "all", INDEX, "http://deb.example/debian/", artifact)


def selection(*packages: InstalledPackage) -> InstalledSelection:
    return InstalledSelection("dpkg", "/var/lib/dpkg/status", packages)


@pytest.fixture
def rbs(tmp_path: Path):
    """rb1..rb3 as file:// trees: rb1 attests a, b, c, d; rb2 a, c, d; rb3 a and another c."""
    made = make_rebuilders(tmp_path, 3)
    for rb, names in zip(made, (("a", "b", "c", "d"), ("a", "c", "d"), ("a",))):
        for name in names:
            rb.publish(name, "1.0-1", {f"{name}_1.0-1_all.deb": name.encode()})
    made[2].publish("c", "1.0-1", {"c_1.0-1_all.deb": b"another build of c"})
    return made


def policy_of(tmp_path: Path, rbs, name: str = "policy.toml", **kw):
    return load_policy(write_policy(tmp_path / name, [rb.entry() for rb in rbs], **{"threshold": 2, **kw}))


# --- --what-if ------------------------------------------------------------------

def test_what_if_parses_every_key(tmp_path: Path, rbs) -> None:
    policy = policy_of(tmp_path, rbs)
    w = parse_what_if("threshold=1, max_conflicts=2,mode=audit,rebuilders=rb1+rb3", policy)
    assert (w.threshold, w.max_conflicts, w.mode, w.rebuilders) == (1, 2, "audit", frozenset({"rb1", "rb3"}))
    assert parse_what_if("without=rb2", policy).rebuilders == frozenset({"rb1", "rb3"})
    assert parse_what_if("threshold=3", policy).rebuilders is None


@pytest.mark.parametrize("text, says", [
    ("threshold", "is not KEY=VALUE"),
    ("threshold=", "is not KEY=VALUE"),
    ("treshold=2", "unknown key 'treshold'"),
    ("threshold=1,threshold=2", "threshold is given twice"),
    ("threshold=0", "threshold must be an integer >= 1"),
    ("threshold=two", "threshold must be an integer >= 1"),
    ("max_conflicts=-1", "max_conflicts must be an integer >= 0"),
    ("mode=lenient", "mode must be enforce or audit"),
    ("rebuilders=rb1+rb9", "rb9 is not a rebuilder of the policy"),
    ("rebuilders=rb1,without=rb2", "give rebuilders or without, not both"),
    ("threshold=4", "threshold 4 is more than the 3 independent operator(s)"),
    ("without=rb2+rb3", "threshold 2 is more than the 1 independent operator(s)"),
])
def test_what_if_mistakes_are_usage_errors(tmp_path: Path, rbs, text: str, says: str) -> None:
    with pytest.raises(WhatIfError) as caught:
        parse_what_if(text, policy_of(tmp_path, rbs))
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_what_if_is_decide_with_another_rule_on_the_same_reports() -> None:
    good = hashlib.sha256(b"x").hexdigest()
    art = Artifact("x_1_all.deb", good, name="x", version="1", arch="all")

    def report(rb: str, digest: str) -> RebuilderReport:
        return RebuilderReport(rb, (SignedLink(rb, f"key-{rb}", {art.filename: {"sha256": digest}}),))

    reports = (report("rb1", good), report("rb2", good), report("rb3", "0" * 64))
    inputs = DecisionInputs(art, Rule(threshold=3, operators={"rb1": "rb1", "rb2": "rb2", "rb3": "rb3"}), reports)
    for what_if in (WhatIf("t", threshold=2), WhatIf("c", threshold=2, max_conflicts=1),
                    WhatIf("r", threshold=2, rebuilders=frozenset({"rb1", "rb2"})), WhatIf("m", mode="audit")):
        rule = what_if.rule(inputs.rule)
        kept = tuple(r for r in reports if what_if.rebuilders is None or r.rebuilder in what_if.rebuilders)
        assert what_if.judge(inputs) == decide(art, rule, kept)
    assert not WhatIf("t", threshold=2).judge(inputs).accepted  # rb3's conflict still counts
    assert WhatIf("r", threshold=2, rebuilders=frozenset({"rb1", "rb2"})).judge(inputs).accepted
    assert WhatIf("m", mode="audit").judge(inputs).allowed


# --- categories ---------------------------------------------------------------

def test_categories_read_the_verdict() -> None:
    good = hashlib.sha256(b"x").hexdigest()
    art = Artifact("x_1_all.deb", good)
    votes = [RebuilderReport(rb, (SignedLink(rb, f"k{rb}", {art.filename: {"sha256": good}}),)) for rb in "ab"]
    dissent = RebuilderReport("c", (SignedLink("c", "kc", {art.filename: {"sha256": "1" * 64}}),))
    halt = HaltNotice("H-1", "bad", ("alice", "bob"))
    assert category(decide(art, Rule(threshold=2), votes)) == ATTESTED
    assert category(decide(art, Rule(threshold=3), votes)) == FEWER
    assert category(decide(art, Rule(threshold=2), [*votes, dissent])) == CONFLICTING
    assert category(decide(art, Rule(threshold=2, max_conflicts=1), [*votes, dissent])) == ATTESTED
    assert category(decide(art, Rule(threshold=2, halts=(halt,)), votes)) == HALTED
    assert category(decide(art, Rule(threshold=2, halts=(replace(halt, overridden="admin"),)), votes)) == ATTESTED
    assert category(decide(art, Rule(threshold=2, gated=False), []), gated=False) == NOT_GATED
    assert category(decide(art, Rule(threshold=2, mode="audit"), [])) == FEWER  # allowed, but fails the rule
    assert category(None) == UNKNOWN


# --- one batch, judged under the policy and what-ifs ----------------------------

def test_check_installed_counts_covers_and_recomputes(tmp_path: Path, rbs) -> None:
    policy = policy_of(tmp_path, rbs)
    gone = InstalledPackage("e", "1.0-1", "all", UNKNOWN, NOT_IN_ANY_INDEX)
    packages = (deb("a"), deb("b"), deb("c"), deb("d"), gone)
    what_ifs = [parse_what_if("threshold=1", policy), parse_what_if("rebuilders=rb1+rb2", policy)]
    report = check_installed(policy, selection(*packages), packages, what_ifs)
    base, lower, without_rb3 = report.scenarios
    assert [j.category for j in base.judgements] == [ATTESTED, FEWER, CONFLICTING, ATTESTED, UNKNOWN]
    assert base.counts() == {"attested": 2, "fewer": 1, "conflicting": 1, "halted": 0, "not-gated": 0, "unknown": 1}
    assert not report.all_meet_policy and base.meeting == 2
    coverage = {c.rebuilder: c for c in base.coverage()}
    assert (coverage["rb1"].attests, coverage["rb1"].alone) == (4, ("b 1.0-1 (all)",))
    assert (coverage["rb2"].attests, coverage["rb2"].missing) == (3, 1)
    assert (coverage["rb3"].attests, coverage["rb3"].conflicts, coverage["rb3"].missing) == (1, 1, 2)
    assert [j.category for j in lower.judgements] == [ATTESTED, ATTESTED, CONFLICTING, ATTESTED, UNKNOWN]
    assert [j.category for j in without_rb3.judgements] == [ATTESTED, FEWER, ATTESTED, ATTESTED, UNKNOWN]
    assert [c.rebuilder for c in without_rb3.coverage()] == ["rb1", "rb2"]
    assert not (tmp_path / "decisions.log").exists()  # status is read-only: no decision log line

    lines = render_text(report)
    assert "would be blocked: 3 package(s)" in lines
    assert "  newly blocked: -" in lines and "  no longer blocked: b 1.0-1 (all)" in lines
    objects = package_objects(report)
    assert [o["name"] for o in objects] == ["a", "b", "c", "d", "e"]
    assert objects[1]["what_if"]["threshold=1"]["meets_policy"] is True
    assert [o["name"] for o in package_objects(report, only_problems=True)] == ["b", "c", "e"]
    summary = summary_object(report, 1)
    assert json.loads(json.dumps(summary)) == summary
    assert [w["no_longer_blocked"] for w in summary["what_if"]] == [["b 1.0-1 (all)"], ["c 1.0-1 (all)"]]
    assert summary["would_block"] == ["b 1.0-1 (all)", "c 1.0-1 (all)", "e 1.0-1 (all)"]


def test_audit_mode_meets_the_policy_but_the_table_says_what_fails(tmp_path: Path, rbs) -> None:
    policy = policy_of(tmp_path, rbs, mode="audit")
    packages = (deb("a"), deb("b"))
    report = check_installed(policy, selection(*packages), packages, [parse_what_if("mode=enforce", policy)])
    assert report.all_meet_policy
    lines = render_text(report)
    assert ("would be blocked: 0 package(s); 1 more fail the rule but are allowed by audit mode or the allowlist"
            in lines)
    [row] = [line for line in lines if line.startswith("  b ")]
    assert "allowed by audit mode: 1 vote (2 required) from rb1" in row
    assert "  newly blocked: b 1.0-1 (all)" in lines


def test_cached_and_unknown_files_are_reported_as_located(tmp_path: Path, rbs) -> None:
    policy = policy_of(tmp_path, rbs)
    cached = replace(deb("a"), located=CACHE, where="/var/cache/apt/archives/a_1.0-1_all.deb")
    gone = InstalledPackage("z", "2:1", "amd64", UNKNOWN, NOT_IN_ANY_INDEX)
    report = check_installed(policy, selection(cached, gone), (cached, gone))
    lines = render_text(report)
    assert "files: 0 located by an index, 1 by a cached copy, 1 unknown" in lines
    [row] = [line for line in lines if line.startswith("  z ")]
    assert row.split()[:5] == ["z", "2:1", "amd64", "unknown", "unknown"]
    assert row.endswith("unknown: version no longer in any index")


# --- halts: the saved state, never a feed -------------------------------------

def test_halts_come_from_the_saved_state_and_no_feed_is_read(tmp_path: Path, rbs) -> None:
    from rebuildgate.fetch import make_transport
    from rebuildgate.halt import HaltWatch

    team = HaltTeam(tmp_path / "team")
    policy = policy_of(tmp_path, rbs, tables=team.tables(), arrays=team.arrays())
    packages = (deb("a"),)

    # Nothing saved yet: as for an install, "no halt feed has ever been read" blocks (stale = block).
    team.publish(team.statement("alice", "bob", packages=["a"]))
    [j] = check_installed(policy, selection(*packages), packages).policy_scenario.judgements
    assert j.category == HALTED and "no halt feed has ever been read" in j.verdict.reason
    assert not (tmp_path / "team" / "halt-state" / "halts.json").exists()  # and nothing was written

    HaltWatch(policy.halt, make_transport(policy.fetch), policy.path).refresh()  # what an install does: saved
    team.publish(team.statement("alice", "bob", packages=["a"]),
                 team.statement("bob", "carol", action="lift", version=2))  # a lift status does not read
    report = check_installed(policy, selection(*packages), packages)
    [j] = report.policy_scenario.judgements
    assert j.category == HALTED and "halted by H-1" in j.verdict.reason
    assert "as saved in" in report.halts and "no feed read now" in report.halts

    (tmp_path / "team" / "halt-state" / "halts.json").write_text("{broken")
    watch = SavedHaltWatch(policy.halt, policy.path)
    for _ in range(2):  # the failure is kept, as HaltWatch keeps a failed refresh
        with pytest.raises(Exception, match="unreadable"):
            watch(packages[0].artifact)
    [j] = check_installed(policy, selection(*packages), packages).policy_scenario.judgements
    assert j.category == HALTED and "halt-error" in j.verdict.reason


# --- progress -------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_redrawn_line_on_a_terminal_and_plain_lines_otherwise() -> None:
    now = [0.0]
    plain = io.StringIO()
    progress = Progress(plain, interval=5.0, clock=lambda: now[0])
    progress.note("reading the installed packages (dpkg)")
    for done in range(1, 101):
        now[0] += 0.1
        progress(done, 100)
    lines = plain.getvalue().splitlines()
    assert lines[0] == "rebuildgate: status: reading the installed packages (dpkg)"
    assert lines[-1] == "rebuildgate: status: evidence for 100 of 100 package(s)"
    assert 2 < len(lines) <= 5 and "\r" not in plain.getvalue()

    term = Terminal()
    progress = Progress(term, clock=lambda: now[0])
    for done in range(1, 4):
        now[0] += 1
        progress(done, 3)
    assert term.getvalue().count("\r\x1b[K") >= 3 and "\n" not in term.getvalue()
    assert term.getvalue().endswith("\r\x1b[K")  # the line is cleared at the end, before the report
    assert "evidence for 3 of 3 package(s)" in term.getvalue()


def test_a_failing_rebuilder_is_counted_in_its_coverage(tmp_path: Path, rbs) -> None:
    policy = policy_of(tmp_path, rbs)
    (rbs[1].root / "sources/a/1.0-1/metadata").resolve().write_text("{not json")
    packages = (deb("a"),)
    scenario = check_installed(policy, selection(*packages), packages).policy_scenario
    coverage = {c.rebuilder: c for c in scenario.coverage()}
    assert (coverage["rb2"].attests, coverage["rb2"].errors) == (0, 1)
    rows = judge(packages, [None], None, ["rb1"])
    assert rows.judgements[0].category == UNKNOWN and rows.coverage()[0].attests == 0
