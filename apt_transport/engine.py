"""Load the policy, the keys and the decision log, and read the halt feeds, while still root.

apt starts the method as root and the method then drops to
``APT::Sandbox::User``; the policy file, the rebuilders' keys and the
decision log may be readable or writable by root only, so all three are
opened here, before the drop, and the halt feeds are read and their state
saved (root owns it: halts must stick whoever runs the check).  A problem becomes a *refusal*: the method
keeps running (index files still pass, apt is never left waiting) and
refuses every package with that one line.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rebuildgate.errors import ConfigError, one_line
from rebuildgate.policy import load_policy
from rebuildgate.proxy import ProxyArg
from rebuildgate.verify import Verifier

from .aptrun import adopt_documents, adopt_trips, run_key


@dataclass
class Engine:
    """The verifier, or why there is none; plus warnings for apt's output."""

    verifier: Verifier | None
    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)
    policy_path: Path | None = None

    def close(self) -> None:
        if self.verifier is not None:
            self.verifier.close()


def load_engine(policy_path: Path | None, proxy: ProxyArg) -> Engine:
    """Everything that may need root; never raises."""
    try:
        policy = load_policy(policy_path)
    except ConfigError as e:
        return Engine(None, one_line(f"rebuildgate: policy error: {e}"))
    except Exception as e:  # noqa: BLE001 - fail closed with a line, never a traceback
        return Engine(None, one_line(f"rebuildgate: cannot load the policy: {type(e).__name__}: {e}"))
    try:
        verifier = Verifier(policy, proxy)
    except ConfigError as e:
        return Engine(None, one_line(f"rebuildgate: policy error: {e}"), policy_path=policy.path)
    except Exception as e:  # noqa: BLE001
        return Engine(None, one_line(f"rebuildgate: cannot load the rebuilders' keys: {type(e).__name__}: {e}"),
                      policy_path=policy.path)
    problem = verifier.open_decision_log()  # as root, before the drop
    verifier.prepare()  # halt feeds read and their state saved as root, before the drop
    # Rebuilders an earlier process of this apt run stopped asking (before any job starts:
    # the budgets are the fetcher's loop's alone once it verifies).
    key = run_key()
    adopt_trips(verifier, policy.fetch.cache_dir, key)
    # What it fetched, read as answers from the cache (verified again on use).
    adopt_documents(verifier, policy.fetch.cache_dir, key)
    return Engine(verifier, None, [one_line(f"rebuildgate: {problem}")] if problem else [], policy.path)


def route_library_log(debug: bool) -> None:
    """The library logs relaxations with `logging`; apt front ends show them their own way.

    The method sends them as ``104 Warning``, the pre-install hook as ``W:``
    lines; the logger's own output only appears with ``Rebuildgate::Debug``.
    """
    logger = logging.getLogger("rebuildgate")
    logger.propagate = False
    logger.handlers[:] = [logging.StreamHandler(sys.stderr) if debug else logging.NullHandler()]
