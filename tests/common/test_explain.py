"""check-config --explain: the id a source yields, and the rule, rebuilders and halts for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebuildgate.explain import explain, saved_halts, subjects
from rebuildgate.halt import HaltWatch
from rebuildgate.policy import Policy, load_policy

from tests.support.halts import HaltTeam
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders

RULES = [{"name": "debian", "match": ["deb.debian.org/debian"], "threshold": 3, "max_conflicts": 1},
         {"name": "local", "match": ["127.0.0.1:*"], "gate": False}]


def make_policy(tmp_path: Path, team: HaltTeam | None = None, **top) -> Policy:
    rbs = make_rebuilders(tmp_path, 3)
    return load_policy(write_policy(tmp_path / "p.toml", [rb.entry() for rb in rbs], threshold=2,
                                    tables=team.tables() if team else None,
                                    arrays={**(team.arrays() if team else {}), "repository": RULES}, **top))


def text_of(policy: Policy, given: str, halts=None) -> str:
    return "\n".join(line for s in subjects(given) for line in explain(policy, s, halts))


def test_sources_line_shows_its_id_rule_threshold_and_rebuilders(tmp_path) -> None:
    text = text_of(make_policy(tmp_path), "deb rebuildgate+https://deb.debian.org/debian bookworm main")
    assert "repository id 'deb.debian.org/debian'" in text
    assert "rule: [[repository]] debian (repository[0]), its pattern 'deb.debian.org/debian' matches" in text
    assert "threshold 3 of 3 rebuilder operator(s), max_conflicts 1, mode enforce" in text
    assert "rebuilders asked: rb1 (file://" in text and "rb3 (" in text
    assert "fetched through rebuildgate's method" in text
    assert "halts: none configured" in text


def test_unmatched_repository_gets_the_global_rule(tmp_path) -> None:
    text = text_of(make_policy(tmp_path, gate_unlisted=False), "updates")
    assert "repository id 'updates'" in text
    assert "no [[repository]] rule matches it: the global rule applies (gate_unlisted = false)" in text
    assert "gated: no" in text and "rebuilders asked" not in text


def test_flat_repository_and_a_line_apt_fetches_itself(tmp_path) -> None:
    text = text_of(make_policy(tmp_path), "deb [trusted=yes] http://127.0.0.1:18080/ ./")
    assert "repository id '127.0.0.1:18080'" in text and "[[repository]] local" in text and "gated: no" in text
    assert "NOT fetched through rebuildgate" in text and "write rebuildgate+http:" in text


def test_halts_come_from_the_saved_state_without_fetching(tmp_path) -> None:
    team = HaltTeam(tmp_path / "team")
    policy = make_policy(tmp_path, team)
    assert policy.halt is not None
    team.publish(team.statement("alice", "bob", repositories=["127.0.0.1:18080/*"]),
                 team.statement("alice", "bob", ident="H-2", packages=["openssl"]),
                 team.statement("alice", "bob", ident="H-3", repositories=["deb.debian.org/debian"]))
    before = saved_halts(policy)
    assert before.statements == ()
    assert before.stale.startswith("halt-feeds-stale: no halt feed has ever been read on this machine; "
                                   "stale = block: every package is blocked until a feed is read")
    from rebuildgate.fetch import make_transport

    HaltWatch(policy.halt, make_transport(policy.fetch), policy.path).refresh()  # an install saved them
    team.feed.unlink()  # explaining never reads the feed
    halts = saved_halts(policy)
    assert halts.stale is None
    flat = text_of(policy, "127.0.0.1:18080", halts)
    assert f"from the saved state {policy.halt.state_dir / 'halts.json'}" in flat
    assert "halt H-1 v1 stops every package from here" in flat  # the pattern is read as what it names
    assert "halt H-2 v1 stops packages openssl from any repository" in flat and "H-3" not in flat
    debian = text_of(policy, "deb.debian.org/debian", halts)
    assert "H-1" not in debian and "halt H-3 v1 stops every package from here" in debian


def test_unreadable_halt_state_is_said(tmp_path) -> None:
    team = HaltTeam(tmp_path / "team")
    policy = make_policy(tmp_path, team)
    assert policy.halt is not None
    policy.halt.state_dir.mkdir(parents=True)
    (policy.halt.state_dir / "halts.json").write_text("{broken")
    text = text_of(policy, "updates", saved_halts(policy))
    assert "halts: cannot tell: halt state" in text and "every package is blocked" in text


@pytest.mark.parametrize("given,expected", [
    ("rebuildgate+https://deb.debian.org/debian/", ["deb.debian.org/debian"]),
    ("Types: deb\nURIs: rebuildgate+https://deb.debian.org/debian rebuildgate+http://127.0.0.1:18080/\n"
     "Suites: bookworm\n", ["deb.debian.org/debian", "127.0.0.1:18080"]),
])
def test_uris_and_stanzas_are_explained_by_their_ids(given, expected) -> None:
    assert [s.repo_id for s in subjects(given)] == expected
