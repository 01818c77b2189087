"""Time and CPU budgets per rebuilder, for one run: the fetcher's circuit breaker.

"A bad rebuilder costs its vote and nothing else" has to hold for time as
well.  The deadline bounds one package's wait for one rebuilder, but a
rebuilder that answers every request just before it is never wrong, only
slow: each package of a large transaction would wait for it (apt asks for
at most ten packages at a time, so 500 packages would wait 50 deadlines).
A rebuilder that serves large documents full of bogus signatures costs
CPU, on the checker threads and in the GIL, for every package.

So each rebuilder's origin (an http host, or a ``file://`` directory) has
an account for the run (one :class:`~rebuildgate.fetch.Transport`: one apt,
dnf or CLI run), and an origin that overdraws it is not asked again:

* one request that ran out of the deadline (the rule before this module);
* :data:`SLOW_LIMIT` requests that took longer than half the deadline,
  counted the moment they pass it, whether they are answered later or not;
* :data:`COSTLY_LIMIT` documents whose signature check cost more than
  :data:`COSTLY_CPU` seconds of CPU and gave no vote.  An honest link costs
  well under a millisecond to check; a document that verifies never counts,
  however large.

Later requests to a tripped origin end at once with the reason, and the
fetcher abandons the requests it still has in flight there: waiting for
them is the time the budget exists to save.  Honest rebuilders are never
slowed by this: a budget only ever removes one rebuilder's later votes.

The accounts are plain bookkeeping, touched on the fetcher's event loop
only; :class:`~rebuildgate.fetch.Transport` does the timing and cancelling.

A run may span processes: one ``apt-get install`` runs the pre-prompt
hook, the method and the pre-install hook.  :meth:`Budgets.tripped` and
:meth:`Budgets.adopt` hand the origins not to be asked again from one to
the next (``rebuildgate.apt.aptrun``), so a slow rebuilder costs one
apt run its half-deadline once, not once per process.  Adopting can only
remove later votes of that origin, never add one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FetchError, RebuilderOverBudget

#: Requests slower than half the deadline before an origin is not asked again.
SLOW_LIMIT = 3
#: Failed costly document checks before an origin is not asked again.
COSTLY_LIMIT = 3
#: CPU seconds above which a document check that gave no vote counts as costly.
COSTLY_CPU = 0.05


@dataclass
class _Account:
    slow: int = 0
    costly: int = 0
    #: (exception class, message) every later request of this origin ends with.
    tripped: tuple[type[FetchError], str] | None = None


class Budgets:
    """The accounts of every origin in one run; see the module docstring."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._accounts: dict[str, _Account] = {}

    def refusal(self, origin: str) -> FetchError | None:
        """The error a new request to *origin* ends with, if it is not asked again."""
        account = self._accounts.get(origin)
        if account is None or account.tripped is None:
            return None
        cls, message = account.tripped
        return cls(message)

    def check_refusal(self, origin: str) -> FetchError | None:
        """The error a document of *origin* gets instead of a signature check,
        if its checks overdrew the CPU budget (documents already fetched from
        an origin tripped for time are still checked: that costs little)."""
        account = self._accounts.get(origin)
        if account is None or account.costly < COSTLY_LIMIT:
            return None
        return self.refusal(origin)

    def timed_out(self, origin: str, why: str) -> bool:
        """A request to *origin* ran out of the deadline; True if this trips it."""
        return self._trip(origin, FetchError, f"{origin} not asked again: it timed out earlier in this run "
                                              f"({why[:120]})")

    def slow_answer(self, origin: str) -> bool:
        """A request to *origin* has taken half the deadline; True if this trips it."""
        account = self._account(origin)
        account.slow += 1
        return account.slow >= SLOW_LIMIT and self._trip(
            origin, RebuilderOverBudget, f"{origin} answered {account.slow} requests slower than half the deadline "
                                         f"({self.deadline / 2:g} s); not asked again in this run")

    def failed_check(self, origin: str, cpu: float) -> bool:
        """A document from *origin* gave no vote after *cpu* seconds of checking; True if this trips it."""
        if cpu < COSTLY_CPU:
            return False
        account = self._account(origin)
        account.costly += 1
        return account.costly >= COSTLY_LIMIT and self._trip(
            origin, RebuilderOverBudget, f"{origin} sent {account.costly} documents that took more than "
                                         f"{COSTLY_CPU * 1000:g} ms of CPU each to check and did not verify; "
                                         "not asked again in this run")

    def tripped(self) -> dict[str, str]:
        """Every origin not asked again, with its reason (for the next process of this run)."""
        return {origin: account.tripped[1] for origin, account in self._accounts.items()
                if account.tripped is not None}

    def adopt(self, origin: str, reason: str) -> None:
        """Do not ask *origin* in this run: an earlier process of the run tripped it for *reason*."""
        self._trip(origin, RebuilderOverBudget, reason)

    def _account(self, origin: str) -> _Account:
        account = self._accounts.get(origin)
        if account is None:
            account = self._accounts[origin] = _Account()
        return account

    def _trip(self, origin: str, cls: type[FetchError], message: str) -> bool:
        account = self._account(origin)
        if account.tripped is not None:
            return False
        account.tripped = (cls, message)
        return True
