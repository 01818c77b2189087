"""The ``DPkg::Pre-Install-Pkgs`` hook: every .deb checked right before dpkg.

The method sees only what apt downloads through a ``rebuildgate+`` entry.
apt hands dpkg other files too: archives already in its cache (fetched with
``--download-only`` before a halt was published, or by another front end),
a cached archive whose size alone matched, ``apt-get install ./x.deb``, a
file apt fetched from a plain mirror after the method refused it.  libapt
runs this hook in every front end (apt, apt-get, aptitude, python-apt's
``commit`` as unattended-upgrades uses it) after the downloads and before
dpkg; a non-zero exit aborts before dpkg runs.  The method stays the first
enforcement point; this hook is the last.

For each file apt will unpack (:mod:`.hookinput`) the hook reads the
package's identity and hashes from the file itself
(:func:`rebuildgate.pkginfo.read_package`: halts and the allowlist are
judged on what dpkg will install, never on the index), asks apt's records
where that exact file came from (:mod:`.origins`), and hands every file the
policy gates to one :meth:`~rebuildgate.verify.Verifier.verify_many` batch.
It prints ``E: rebuildgate: ...`` per blocked package and ``W: ...`` per
relaxation, and exits 1 if anything is blocked.

It fails closed on its own trouble (unreadable input, a broken policy, apt's
cache unreadable, no verdict in time: exit 2 with one line), with one
exception: when there is no policy file at all, and nobody named one, it
says so in one line and lets apt go on, so that installing rebuildgate
never breaks apt before it is configured.  apt waits for a hook without a
timeout, so the hook keeps its own: a margin for the local work plus the
policy's fetch deadline for each round of rebuilder lookups.

apt runs the hook as root: the policy, keys and decision log are read and
written as they are for ``rebuildgate verify``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rebuildgate.errors import PackageError, one_line
from rebuildgate.model import Artifact
from rebuildgate.pkginfo import read_package
from rebuildgate.policy import POLICY_ENV, policy_path
from rebuildgate.proxy import ProxyChoice

from . import protocol
from .aptconfig import AptConfig
from .hookinput import HookInput, HookInputError, PackageLine, parse
from .origins import MISMATCH, PLAIN, Origin, origin_of
from .records import AptRecords, PackageId, RecordsError
from .watchdog import Watchdog

EXIT_OK, EXIT_BLOCKED, EXIT_ERROR = 0, 1, 2
#: Seconds for the local work (apt's cache, halt feeds, start-up) on top of
#: the time to read the files and the rebuilders' deadline.
MARGIN = 30.0
#: Reading and hashing (sha256 + sha512) rate assumed for the time budget;
#: this machine does ~250 MiB/s, so a slow disk has room.
READ_RATE = 16 << 20
#: The verifier's own grace after a rebuilder's deadline (PendingVerdict.GRACE).
GRACE = 2.0

class HookError(Exception):
    """The hook cannot do its job; apt must stop (one line)."""


@dataclass
class Judgement:
    """One file apt hands to dpkg and what the hook makes of it."""

    line: PackageLine
    path: str
    artifact: Artifact | None = None
    origin: Origin | None = None
    refusal: str | None = None  # blocked before any verdict: unreadable, not the index's file

    @property
    def label(self) -> str:
        if self.artifact is not None:
            return self.artifact.label
        return f"{self.line.name} {self.line.new_version} ({self.line.new_arch})"


@dataclass
class Outcome:
    """What the hook tells apt: lines to print and its exit status."""

    status: int = EXIT_OK
    show_debug: bool = False  # Rebuildgate::Debug
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)

    def block(self, text: str) -> None:
        self.errors.append(text)
        self.status = max(self.status, EXIT_BLOCKED)

    def fail(self, text: str) -> "Outcome":
        self.errors.append(text)
        self.status = EXIT_ERROR
        return self

    def write(self, stream: TextIO) -> None:
        for text in self.debug if self.show_debug else ():
            stream.write(f"rebuildgate: debug: {one_line(text, 2000)}\n")
        for prefix, lines in (("W", self.warnings), ("E", self.errors)):
            for text in lines:
                stream.write(f"{prefix}: {one_line(text, 4000)}\n")
        stream.flush()


def read_input() -> bytes:
    """apt's lines: from ``APT_HOOK_INFO_FD`` when apt set it (``InfoFD``), else stdin."""
    fd_text = os.environ.get("APT_HOOK_INFO_FD", "")
    fd = int(fd_text) if fd_text.isdigit() else 0
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def check(hook: HookInput, watchdog: Watchdog | None = None) -> Outcome:
    """Judge every file of *hook*; never raises for a per-file problem."""
    config = AptConfig()
    for name, value in hook.config:
        config.add(name, value)
    settings = config.settings("http")
    outcome = Outcome(show_debug=settings.debug)
    if settings.error:
        return outcome.fail(f"rebuildgate: apt configuration error: {settings.error}")
    path = policy_path(settings.policy)
    if settings.policy is None and not os.environ.get(POLICY_ENV) and not os.path.lexists(path):
        outcome.warnings.append(f"rebuildgate: no policy file {path}: packages are not checked before dpkg "
                                f"(write the policy to turn rebuildgate on)")
        return outcome
    records = AptRecords(config.apply_globally)
    judged: list[Judgement] = []
    for line in hook.files:
        item = _identify(line, records, outcome)
        if item.refusal:
            outcome.block(item.refusal)
        elif item.origin is not None and item.origin.judged:
            judged.append(item)
    if not judged:
        return outcome
    _verify(judged, path, settings.proxy, settings.debug, outcome, watchdog)
    return outcome


def _identify(line: PackageLine, records: AptRecords, outcome: Outcome) -> Judgement:
    """Read the file apt hands to dpkg and find out where apt got it."""
    path = line.path or ""
    item = Judgement(line, path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
            item.refusal = f"rebuildgate: {item.label}: blocked: {path} is not a regular file"
            return item
        item.artifact = read_package(Path(path))
    except (OSError, PackageError) as e:
        item.refusal = f"rebuildgate: {item.label}: blocked: cannot read the package dpkg would install: {e}"
        return item
    artifact = item.artifact
    wanted = {PackageId(line.name, line.new_version, line.new_arch),
              PackageId(artifact.name or "", artifact.version or "", artifact.arch or "")}
    try:
        found = [r for pkg in sorted(wanted, key=repr) for r in records.index_records(pkg)]
    except RecordsError as e:
        raise HookError(f"rebuildgate: {e}") from None
    item.origin = origin_of(found, artifact.sha256)
    item.artifact = dataclasses.replace(artifact, repo=item.origin.repo)
    outcome.debug.append(f"{artifact.label} (source {artifact.source}, sha256 {artifact.sha256[:16]}) {path}: "
                         f"{item.origin.kind}" + (f" from {item.origin.uri}" if item.origin.uri else ""))
    if item.origin.kind == MISMATCH:
        listed = item.origin.index_sha256 or "no sha256"
        item.refusal = (f"rebuildgate: {artifact.label}: blocked: {path} has sha256 {artifact.sha256}, but the "
                        f"index of {item.origin.uri} lists {listed} for this version (changed after download?); "
                        f"remove it (apt-get clean) and let apt fetch it again")
    elif item.origin.kind == PLAIN:
        outcome.debug.append(f"{artifact.label}: left alone (plain source {item.origin.uri})")
    return item


def _verify(judged: list[Judgement], policy: Path, proxy: ProxyChoice | None, debug: bool, outcome: Outcome,
            watchdog: Watchdog | None) -> None:
    from .engine import load_engine, route_library_log  # the verifier's imports, only when a file needs them

    route_library_log(debug)  # relaxations are printed as W: lines below
    if watchdog is not None:  # loading the engine reads the halt feeds, one deadline each at most
        watchdog.extend(_feed_time(policy))
    engine = load_engine(policy, proxy)
    if engine.verifier is None:
        outcome.fail(engine.refusal or "rebuildgate: no verifier")
        return
    outcome.warnings.extend(engine.warnings)
    verifier = engine.verifier
    fetch = verifier.policy.fetch
    lookups = len(judged) * max(1, len(verifier.policy.rebuilders))
    if watchdog is not None:
        watchdog.extend(fetch.deadline * math.ceil(lookups / fetch.max_workers) + GRACE + MARGIN)
    artifacts = [item.artifact for item in judged if item.artifact is not None]
    for item, verdict in zip(judged, verifier.verify_many(artifacts)):
        text = f"rebuildgate: {verdict.summary()} [{item.path}]"
        if not verdict.allowed:
            outcome.block(text)
        elif verdict.relaxed_by:
            outcome.warnings.append(text)
        else:
            outcome.debug.append(text)


def _feed_time(policy: Path) -> float:
    """The longest reading the policy's halt feeds may take (0 without [halt] or a loadable policy)."""
    from rebuildgate.errors import ConfigError
    from rebuildgate.policy import load_policy

    try:
        loaded = load_policy(policy)
    except ConfigError:
        return 0.0  # load_engine reports it
    return loaded.fetch.deadline * len(loaded.halt.feeds) + GRACE if loaded.halt else 0.0


def run(data: bytes, stream: TextIO) -> int:
    """The whole hook on apt's input; prints to *stream*, returns the exit status."""
    try:
        hook = parse(data.decode(protocol.ENCODING, protocol.ERRORS))
    except HookInputError as e:
        Outcome().fail(f"rebuildgate: {e}").write(stream)
        return EXIT_ERROR
    if not hook.files:
        return EXIT_OK  # configure and remove only: nothing to check
    sizes = sum(_size(line.path or "") for line in hook.files)
    watchdog = Watchdog(MARGIN + sizes / READ_RATE)
    try:
        outcome = watchdog.run(lambda: check(hook, watchdog=watchdog))
    except TimeoutError:
        outcome = Outcome().fail(f"rebuildgate: no verdict within the hook's time limit for {len(hook.files)} "
                                 f"package(s) (rebuilders too slow?): nothing was installed")
    except HookError as e:
        outcome = Outcome().fail(str(e))
    except Exception as e:  # noqa: BLE001 - a bug blocks with one line, never lets dpkg run unchecked
        outcome = Outcome().fail(f"rebuildgate: internal error in the pre-install check: {type(e).__name__}: {e}")
    outcome.write(stream)
    return outcome.status


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def main() -> None:
    """Console script ``rebuildgate-apt-preinstall`` (apt runs it through the launcher install.py writes)."""
    try:
        data = read_input()
    except (OSError, ValueError) as e:
        sys.stderr.write(f"E: rebuildgate: cannot read what apt sent the pre-install hook: {e}\n")
        code = EXIT_ERROR
    else:
        code = run(data, sys.stderr)
    sys.stderr.flush()
    # Fetcher threads may still wait on a rebuilder (bounded by its deadline); the
    # verdicts are printed and logged, and apt waits for this process to end.
    os._exit(code)


if __name__ == "__main__":
    main()
