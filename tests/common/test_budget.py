"""Budgets: when a rebuilder's origin stops being asked, and what it is told."""

from __future__ import annotations

from rebuildgate import budget
from rebuildgate.budget import Budgets
from rebuildgate.errors import FetchError, RebuilderOverBudget


def test_a_fresh_origin_is_asked() -> None:
    b = Budgets(deadline=30.0)
    assert b.refusal("rb.example") is None and b.check_refusal("rb.example") is None


def test_slow_answers_trip_at_the_limit_with_a_reason() -> None:
    b = Budgets(deadline=30.0)
    for _ in range(budget.SLOW_LIMIT - 1):
        assert not b.slow_answer("rb.example")
        assert b.refusal("rb.example") is None
    assert b.slow_answer("rb.example")
    error = b.refusal("rb.example")
    assert isinstance(error, RebuilderOverBudget) and error.kind == "slow"
    assert str(error) == ("rb.example answered 3 requests slower than half the deadline (15 s); "
                          "not asked again in this run")
    assert not b.slow_answer("rb.example")  # tripped once, told once
    assert b.refusal("other.example") is None  # one origin's budget only
    assert b.check_refusal("rb.example") is None  # documents in hand are still checked


def test_one_timeout_trips_as_before() -> None:
    b = Budgets(deadline=30.0)
    assert b.timed_out("rb.example", "rb.example did not answer within the deadline of 30s")
    error = b.refusal("rb.example")
    assert type(error) is FetchError and error.kind == "fetch-error"
    assert "not asked again: it timed out earlier in this run" in str(error)


def test_only_costly_failed_checks_count() -> None:
    b = Budgets(deadline=30.0)
    for _ in range(10):
        assert not b.failed_check("rb.example", budget.COSTLY_CPU / 2)  # a cheap bad document: its vote only
    assert b.refusal("rb.example") is None
    for i in range(budget.COSTLY_LIMIT):
        assert b.failed_check("rb.example", budget.COSTLY_CPU * 2) == (i == budget.COSTLY_LIMIT - 1)
    error = b.check_refusal("rb.example")
    assert isinstance(error, RebuilderOverBudget) and error.kind == "slow"
    assert "3 documents that took more than 50 ms of CPU each to check and did not verify" in str(error)
    assert str(b.refusal("rb.example")) == str(error)


def test_trips_are_handed_on_and_adopted() -> None:
    """What one process of a run stopped asking, the next adopts: refused at once, with the reason."""
    first = Budgets(deadline=2.0)
    for _ in range(3):
        first.slow_answer("rb5.example")
    first.slow_answer("rb1.example")  # one slow answer trips nothing
    handed = first.tripped()
    assert list(handed) == ["rb5.example"] and "slower than half the deadline" in handed["rb5.example"]
    second = Budgets(deadline=2.0)
    assert second.refusal("rb5.example") is None
    second.adopt("rb5.example", handed["rb5.example"])
    refusal = second.refusal("rb5.example")
    assert isinstance(refusal, RebuilderOverBudget) and str(refusal) == handed["rb5.example"]
    assert second.refusal("rb1.example") is None and second.tripped() == handed
