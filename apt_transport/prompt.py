"""apt's pre-prompt hook: the whole transaction judged before the Y/n prompt and any download.

The method judges package by package while apt downloads, after the user
said yes, and a refusal stops the transaction half-way.  apt's JSON hooks
(``AptCli::Hooks::Install`` and ``::Upgrade``, :mod:`.jsonhook`) announce
the transaction first (``install.pre-prompt``), in ``apt`` and ``apt-get``
alike, with ``-y``, ``--download-only`` and ``-s``.  For every package that
will come from a ``rebuildgate+`` entry this hook takes the sha256, pool
name and source package from apt's own index records (python-apt on the
cache apt just built: ``APT_CONFIG`` is inherited), verifies them all with
one :meth:`~rebuildgate.verify.Verifier.verify_many` call and, if any is
blocked, prints the table the dnf plugin prints (:mod:`rebuildgate.table`)
and exits :data:`EXIT_BLOCKED`, so apt stops: nothing was downloaded.

It is an early warning, never the enforcement point: the method judges
every download again (fail-closed), and ``apt-get download``, aptitude,
unattended-upgrades and PackageKit never run this hook.  So the hook's own
trouble (unreadable input, apt's cache, a crash, no verdict by its
deadline, a policy that does not load: the method then refuses every
package with that line anyway) is one ``W:`` line and exit 0: the download
check decides.  Packages the hook cannot pin down (apt's version id does
not match the cache it opens, no sha256 in the index) are left to the
method too.  Removals and packages from plain entries or local files are
never judged here (the pre-install hook looks at local files).

Run by anyone but root (``apt-get -s`` as a user) it reports what it would
block as ``W:`` lines and lets apt go on: only root's verdict counts, and
only root can write the decision log and the evidence cache.

What it fetched is not fetched again: as root it leaves the documents in
one file of this apt run in the evidence cache's directory (root-owned
``/var/cache/rebuildgate``, :mod:`.aptrun`), which the method (as ``_apt``)
and the pre-install hook read in one go, and a detached child writes them
to the evidence cache itself (:mod:`rebuildgate.cache`) for later runs;
apt waits for neither.  Both save requests and never change a verdict:
every document is verified again on use, and one that gives no vote is
fetched afresh.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from . import jsonhook
from .prompt_entry import EXIT_BLOCKED, EXIT_OK, LEFT_TO_METHOD, fail

if TYPE_CHECKING:
    from rebuildgate.proxy import ProxyChoice

#: The table fits a terminal of this width after apt's ``E: `` prefix.
WIDTH = 80
#: Seconds for the local work (apt's cache, halt feeds, start-up) on top of
#: the rebuilders' deadline.
MARGIN = 10.0
#: The verifier's own grace after a rebuilder's deadline (PendingVerdict.GRACE).
GRACE = 2.0
#: Seconds to wait before exiting for the cache writes of documents beyond what
#: the hook holds back (those it holds go to the method in one file, and to the
#: cache by a detached child).
CACHE_FLUSH = 2.0
FOOTER = "Nothing was downloaded."


class HookFailure(Exception):
    """The hook cannot judge; apt goes on and the method decides (one line)."""


@dataclass(frozen=True)
class Settings:
    """What the hook takes from apt's configuration (``APT_CONFIG``, apt.conf.d)."""

    policy: Path | None
    debug: bool
    proxy: "ProxyChoice"  # apt's proxy settings, applied per evidence URL
    deadline: float | None  # Rebuildgate::Prompt::Deadline; None: the policy's own bound


@dataclass
class Report:
    """What the hook tells apt: lines to print and its exit status."""

    status: int = EXIT_OK
    table: list[str] = field(default_factory=list)  # E: (W: when not blocking) on its first line only
    warnings: list[str] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)
    show_debug: bool = False

    def write(self, stream: TextIO) -> None:
        for text in self.debug if self.show_debug else ():
            stream.write(f"rebuildgate: debug: {text}\n")
        for text in self.warnings:
            stream.write(f"W: {text}\n")
        prefix = "E" if self.status == EXIT_BLOCKED else "W"
        for n, text in enumerate(self.table):
            stream.write(f"{prefix}: {text}\n" if n == 0 else f"{text}\n")
        stream.flush()


def read_settings() -> Settings:
    """apt's configuration as the hook inherits it (``APT_CONFIG``, then apt.conf.d).

    apt 2.6 sends a JSON hook no options, so ``-o`` items given on apt's
    command line are not seen here (the method sees them and decides).
    """
    import apt_pkg

    from .aptconfig import KNOWN, PREFIX, proxy_for

    apt_pkg.init_config()
    config = apt_pkg.config
    unknown = [f"{PREFIX}{k}" for k in _subkeys(config, PREFIX.rstrip(":")) if f"{PREFIX}{k}".lower() not in KNOWN]
    if unknown:
        raise HookFailure(f"unknown apt option {unknown[0]}")
    policy = config.find("Rebuildgate::Policy", "")
    deadline: float | None = None
    raw = config.find("Rebuildgate::Prompt::Deadline", "")
    if raw:
        try:
            deadline = float(raw)
        except ValueError:
            deadline = -1.0
        if not 0 < deadline < 3600:
            raise HookFailure(f"Rebuildgate::Prompt::Deadline must be seconds (0-3600), not {raw[:40]!r}")
    return Settings(Path(policy) if policy else None, bool(config.find_b("Rebuildgate::Debug", False)),
                    proxy_for(config.find, "http"), deadline)


def _subkeys(config, root: str) -> list[str]:  # noqa: ANN001 - apt_pkg.Configuration
    """Leaf names under *root* (``Prompt::Deadline`` under ``Rebuildgate``)."""
    out = []
    for key in config.list(root) if config.exists(root) else []:
        children = _subkeys(config, key)
        out.extend(children or [key.split("::", 1)[1]])
    return out


def judge(packages: list[jsonhook.Install], settings: Settings, root: bool, extend=None) -> Report:
    """Verify every gated package of the transaction in one batch; never raises for a verdict.

    *extend* (the watchdog's) is called with the verification's own time bound.
    """
    from rebuildgate.policy import POLICY_ENV, policy_path

    report = Report(show_debug=settings.debug)
    path = policy_path(settings.policy)
    if settings.policy is None and not os.environ.get(POLICY_ENV) and not os.path.lexists(path):
        report.debug.append(f"no policy file {path}: nothing to judge")
        return report
    artifacts = _artifacts(packages, report)
    if not artifacts:
        return report
    from .engine import load_engine, route_library_log

    route_library_log(settings.debug)
    engine = load_engine(path, settings.proxy)
    if engine.verifier is None:
        why = (engine.refusal or "no verifier").removeprefix("rebuildgate: ")
        if not root:  # the policy and keys may well be root's alone
            raise HookFailure(f"{why} (run as uid {os.geteuid()}, not root)")
        # The method refuses every package with this same line: one W: here, not a second table.
        raise HookFailure(f"{why}; the method refuses every package until it is fixed")
    if root:
        report.warnings.extend(engine.warnings)
    verifier = engine.verifier
    fetch = verifier.policy.fetch
    if extend is not None and settings.deadline is None:
        lookups = len(artifacts) * max(1, len(verifier.policy.rebuilders))
        extend(fetch.deadline * math.ceil(lookups / fetch.max_workers) + GRACE + MARGIN)
    transport = verifier.transport
    if root and transport.cache is not None:
        transport.hold_cache_writes()  # handed on below, in one file and by a detached writer
    verdicts = verifier.verify_many(artifacts)
    if root:
        _hand_on(verifier, report)
    _tell(verdicts, verifier.policy, root, report)
    return report


def _hand_on(verifier, report: Report) -> None:  # noqa: ANN001 - Verifier
    """Leave the method and the pre-install hook of this apt run what this run learned:
    the rebuilders it found too slow, and the documents it fetched (in one file, read
    in one go), and have the documents written to the evidence cache for later runs
    by a detached child, which neither apt nor the method waits for."""
    from .aptrun import run_key, save_documents, save_trips, tripped

    fetch, transport, cache = verifier.policy.fetch, verifier.transport, verifier.transport.cache
    if cache is not None:
        cache.usable(create=True)  # the directory both files go to, made if this run wrote nothing yet
    key = run_key()
    save_trips(fetch.cache_dir, key, tripped(verifier))
    held = transport.held_cache_writes()
    if held and cache is not None:
        save_documents(fetch.cache_dir, key, held)
        if cache.write_detached(held) is None:
            report.debug.append("evidence cache: not written; later apt runs fetch again")
    # Documents beyond what is held back went to the cache as usual.
    if not transport.flush_cache(CACHE_FLUSH):
        report.debug.append("evidence cache: writes not done in time; the method fetches what is missing")


def _artifacts(packages: list[jsonhook.Install], report: Report):  # -> list[Artifact]
    """The Artifact of every package apt will fetch through a ``rebuildgate+`` entry."""
    from .origins import is_gated_uri
    from .records import AptRecords, RecordsError, record_artifact

    records = AptRecords(lambda: None)  # apt_pkg.config is APT_CONFIG already (read_settings)
    out = []
    for p in packages:
        try:
            found = records.version_records(p.name, p.arch, p.version, p.version_id)
        except RecordsError as e:
            raise HookFailure(str(e)) from None
        if found is None:
            report.debug.append(f"{p.name} {p.version}: apt's version id {p.version_id} is not in the cache "
                                f"opened here; {LEFT_TO_METHOD}")
            continue
        gated = [r for r in found if r.uri and is_gated_uri(r.uri)]
        if not gated:
            report.debug.append(f"{p.name} {p.version}: not from a rebuildgate+ entry, not judged here")
            continue
        record = next((r for r in gated if r.sha256), None)
        if record is None or record.uri is None:
            report.debug.append(f"{p.name} {p.version}: the index gives no sha256; {LEFT_TO_METHOD}")
            continue
        out.append(record_artifact(p.name, p.version, record))
    return out


def _tell(verdicts, policy, root: bool, report: Report) -> None:  # noqa: ANN001 - Verdict, Policy
    from rebuildgate.table import format_blocked

    blocked = [v for v in verdicts if not v.allowed]
    for v in verdicts:
        if v.allowed and v.relaxed_by:
            report.warnings.append(f"rebuildgate: {v.summary()}")
        else:
            report.debug.append(f"rebuildgate: {v.summary()}")
    if not blocked:
        return
    footer = FOOTER if root else f"Not run as root: nothing is blocked here; {LEFT_TO_METHOD}."
    report.table = format_blocked(blocked, len(verdicts), "before download", footer, policy, {},
                                  label=lambda a: a.label, width=WIDTH - 3).splitlines()
    report.status = EXIT_BLOCKED if root else EXIT_OK


def judge_transaction(packages: list[jsonhook.Install], stream: TextIO) -> int:
    """Judge a pre-prompt notification's packages and tell apt; returns the exit status.

    Never raises: the hook's own trouble is one ``W:`` line and exit 0.
    """
    from .watchdog import Watchdog

    try:
        settings = read_settings()
        watchdog = Watchdog(settings.deadline if settings.deadline is not None else MARGIN)
        report = watchdog.run(lambda: judge(packages, settings, os.geteuid() == 0, watchdog.extend))
    except TimeoutError:
        return fail(stream, f"no verdict before download within the hook's time limit for {len(packages)} "
                            f"package(s) (rebuilders slow or unreachable)")
    except HookFailure as e:
        return fail(stream, str(e))
    except Exception as e:  # noqa: BLE001 - a bug must not stop apt: the method still decides
        return fail(stream, f"internal error in the pre-prompt check: {type(e).__name__}: {e}")
    report.write(stream)
    return report.status
