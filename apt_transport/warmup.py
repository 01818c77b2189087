"""apt's warm-up: evidence for upgradable packages, fetched right after ``apt-get update``.

apt runs ``APT::Update::Post-Invoke-Success`` commands after a successful
update; the snippet :mod:`.install` writes runs this program's launcher
there, which starts it in the background (its own session, no terminal,
no pipe of apt's) and returns at once: ``apt-get update`` never waits for
rebuilders.  Only when the policy says ``[fetch] warm_up = true`` (off by
default) does it do anything: as root (only root writes the evidence
cache), it opens apt's cache as the update left it, takes the candidate
version of every installed package that can be upgraded from a
``rebuildgate+`` entry (sha256, pool name and source package from apt's
own index records, as the pre-prompt hook does), and hands them to
:func:`rebuildgate.warmup.warm_cache`.  The later ``apt-get upgrade``
(its pre-prompt hook and the method) then finds the documents in the cache
and verifies them again, without a round trip.

Nothing it does can let a package through or block one: it decides
nothing.  One run at a time (a lock in the cache directory); its summary
goes to syslog and to ``<cache_dir>/warm-up.json``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

#: The summary of the last run, beside the cached documents.
SUMMARY = "warm-up.json"
LOCK = "warm-up.lock"


def upgradable_artifacts():  # -> list[Artifact]
    """The candidate of every installed package apt could upgrade from a ``rebuildgate+`` entry."""
    from .origins import is_gated_uri
    from .records import AptRecords, record_artifact

    out = []
    for pkg, found in AptRecords(lambda: None).upgrades():  # apt_pkg.config is APT_CONFIG already
        record = next((r for r in found if r.uri and r.sha256 and is_gated_uri(r.uri)), None)
        if record is None:
            continue
        out.append(record_artifact(pkg.name, pkg.version, record))
    return out


def run() -> str | None:
    """One warm-up; its summary line, or None when there is nothing to do."""
    import apt_pkg

    from rebuildgate.policy import load_policy, policy_path
    from rebuildgate.warmup import warm_cache

    from .aptconfig import proxy_for

    apt_pkg.init_config()
    policy = load_policy(policy_path(apt_pkg.config.find("Rebuildgate::Policy", "") or None))
    settings = policy.fetch
    if not settings.warm_up or settings.cache_dir is None:
        return None
    directory = Path(settings.cache_dir)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(directory / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return "warm-up: another warm-up is running"
        started = time.time()
        report = warm_cache(policy, upgradable_artifacts(), proxy_for(apt_pkg.config.find, "http"))
        summary = {"started": started, "finished": time.time(), "packages": report.packages,
                   "skipped": report.skipped, "fetched": report.fetched, "cached": report.cached,
                   "missing": report.missing, "failed": report.failed, "errors": report.errors,
                   "expired_removed": report.expired_removed}
        from rebuildgate.atomic import write_atomic

        write_atomic(directory / SUMMARY, json.dumps(summary, indent=1).encode() + b"\n", durable=False)
        return report.summary()


def main() -> None:
    """Console script ``rebuildgate-apt-warmup`` (apt runs it through its launcher, in the background)."""
    if os.geteuid() != 0:
        return  # only root writes the evidence cache; apt-get update as a user has nothing to warm
    try:
        line = run()
    except Exception as e:  # noqa: BLE001 - a warm-up that fails costs only its requests later
        from rebuildgate.errors import one_line

        line = one_line(f"warm-up failed: {type(e).__name__}: {e}", 500)
    if line:
        import syslog

        syslog.openlog("rebuildgate", 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_INFO, line)


if __name__ == "__main__":
    main()
