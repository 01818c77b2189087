"""The table of blocked packages (rebuildgate.table): dnf's one-line rows, apt's 80 columns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from rebuildgate.model import Artifact
from rebuildgate.table import format_blocked, nevra

POLICY = SimpleNamespace(path=Path("/etc/rebuildgate/policy.toml"), log=Path("/var/log/rebuildgate/decisions.log"))


def verdict(name: str, reason: str, failing: tuple[str, ...] = ("rb1",)) -> SimpleNamespace:
    """Just what the table reads from a Verdict."""
    artifact = Artifact(filename=f"{name}_1.0-1_all.deb", sha256="ab" * 32, name=name, version="1:1.0-1", arch="all")
    return SimpleNamespace(artifact=artifact, reason=reason, vote_count=1, threshold=2, conflict_count=0,
                           max_conflicts=0, conflicts=[], missing=list(failing), errors=[])


def test_without_a_width_each_row_is_one_line_as_dnf_prints_it():
    text = format_blocked([verdict("hello", "1 vote (2 required) " + "x" * 100)], 3, "before download",
                          "Nothing was downloaded.", POLICY, {})
    lines = text.splitlines()
    assert lines[0] == ("rebuildgate blocked 1 of 3 package(s) before download "
                        "(policy /etc/rebuildgate/policy.toml):")
    assert lines[1].split() == ["PACKAGE", "SHA256", "VOTES", "CONFLICTS", "FAILING", "REBUILDERS", "REASON"]
    assert lines[2].split()[:6] == ["hello-1:1.0-1.all", "abababababababab", "1/2", "0", "(max", "0)"]
    assert lines[2].endswith("x" * 100)
    assert lines[3] == "Nothing was downloaded. Decision log: /var/log/rebuildgate/decisions.log"


def test_a_row_that_fits_stays_on_one_line_with_a_width():
    text = format_blocked([verdict("a", "short")], 1, "now", "F.", POLICY, {}, label=lambda a: a.label, width=100)
    lines = text.splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("  PACKAGE"))
    assert lines[header + 1].split() == ["a", "1:1.0-1", "(all)", "abababababababab", "1/2", "0", "(max", "0)",
                                            "rb1", "(missing)", "short"]


@settings(max_examples=60, deadline=None)
@given(name=st.text("abcdefghijklmnopqrstuvwxyz0123456789+-.", min_size=1, max_size=120),
       reason=st.text("abc xyz:;()0123456789", min_size=1, max_size=400),
       failing=st.lists(st.text("abcdefghij-", min_size=1, max_size=40), min_size=0, max_size=5, unique=True))
def test_with_a_width_every_line_fits_and_nothing_is_cut(name: str, reason: str, failing: list[str]):
    text = format_blocked([verdict(name, reason, tuple(failing))], 1, "before download", "Nothing was downloaded.",
                          POLICY, {}, label=lambda a: a.label, width=77)
    lines = text.splitlines()
    assert all(len(line) <= 77 for line in lines), text
    shown = Counter("".join(text.split()))
    assert not Counter("".join((name + reason + "".join(failing)).split())) - shown  # wrapped, never cut


def test_dnf_label_is_nevra():
    assert nevra(Artifact(filename="x.rpm", sha256="0" * 64, name="a", version="1-2", arch="noarch")) == "a-1-2.noarch"
    assert nevra(Artifact(filename="x.rpm", sha256="0" * 64)) == "x.rpm"
