"""Evidence bundles: fetch every rebuilder's documents for some packages and
write them to a directory, for a machine without network to verify.

Qubes dom0 has no network: its UpdateVM downloads the packages, and now
also runs :func:`collect` (``rebuildgate collect``, or the dnf plugin in
collect mode) to write an *evidence bundle*::

    <bundle>/<rebuilder name>/<the layout's path>   one document, exactly as served
    <bundle>/manifest.json                            what was collected, from where, when

The paths are :class:`rebuildgate.layouts.Location` paths, the same the
reader (:class:`rebuildgate.fetch.EvidenceSource` with ``[fetch] bundle``)
looks up.  Nothing here verifies anything or needs a key: the bundle comes
from a machine trusted less than the one that reads it, which checks every
document as if a hostile rebuilder had served it.  The manifest is for
people and tools that want to know what was collected; the reader never
reads it.

Fetching is the verifier's: one :class:`~rebuildgate.fetch.Transport`
(parallel on one event loop, at most ``max_workers`` lookups in flight,
every request bounded, one request per URL), minus the bundle and offline
settings (collecting is what fills the bundle).  Documents are written on
writer threads as they arrive, each through :func:`rebuildgate.atomic.write_atomic`,
so a bundle never holds a truncated document and memory never holds all
of them.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import os
import tarfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from .atomic import write_atomic, write_atomic_with
from .errors import EvidenceMissing, FetchError, RebuildgateError
from .fetch import Document, Transport, make_transport, rebuilderd_attestations
from .layouts import Location, evidence_locations, location, rebuilderd_lookup
from .model import Artifact
from .policy import BUNDLE_RESERVED, Policy, Rebuilder
from .proxy import ProxyArg

MANIFEST = "manifest.json"
FORMAT = "rebuildgate-evidence-bundle"
FORMAT_VERSION = 1
WRITERS = 4

#: ``progress(done, total)``: packages whose every rebuilder has been asked.
ProgressFn = Callable[[int, int], None]


class CollectError(RebuildgateError):
    """The bundle could not be written (the message says which file and why)."""


@dataclass
class Entry:
    """One document of the bundle: collected, missing at the rebuilder, or failed."""

    rebuilder: str
    url: str
    path: str  # relative to the bundle directory: "<rebuilder>/<layout path>"
    status: str = "pending"  # "collected" | "missing" | "error"
    sha256: str | None = None
    size: int = 0
    detail: str = ""
    packages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {"rebuilder": self.rebuilder, "url": self.url, "path": self.path, "packages": self.packages}
        if self.status == "collected":
            out.update(sha256=self.sha256, size=self.size)
        elif self.detail:
            out["error"] = self.detail
        return out


@dataclass
class CollectReport:
    """What :func:`collect` did; ``manifest()`` is what it wrote as manifest.json."""

    bundle: Path
    artifacts: list[Artifact]
    entries: dict[str, Entry] = field(default_factory=dict)  # by path
    #: Per package and rebuilder, a problem that came before any document
    #: (an unsafe name, a broken rebuilderd answer): (rebuilder, package, why).
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    created: str = ""
    seconds: float = 0.0
    tar: Path | None = None

    def by_status(self, status: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.status == status]

    @property
    def complete(self) -> bool:
        """Every rebuilder answered for every package (with a document or "none")."""
        return not self.by_status("error") and not self.failures

    def summary(self) -> str:
        collected, missing, errors = (len(self.by_status(s)) for s in ("collected", "missing", "error"))
        return (f"{collected} document(s) collected, {missing} missing at the rebuilder, "
                f"{errors + len(self.failures)} failed, for {len(self.artifacts)} package(s) in "
                f"{self.seconds:.2f}s into {self.bundle}" + (f" and {self.tar}" if self.tar else ""))

    def manifest(self, policy: Policy) -> dict:
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "created": self.created, "policy": str(policy.path),
            "note": "informational only: the reader verifies every document and never reads this file",
            "rebuilders": [{"name": rb.name, "url": rb.url, "layout": rb.layout} for rb in policy.rebuilders],
            "packages": [{"artifact": a.filename, "sha256": a.sha256 or None, "name": a.name,
                          "version": a.version, "arch": a.arch, "source": a.source} for a in self.artifacts],
            "documents": [e.to_json() for e in self.by_status("collected")],
            "missing": [e.to_json() for e in self.by_status("missing")],
            "errors": [e.to_json() for e in self.by_status("error")] + [
                {"rebuilder": rb, "package": pkg, "error": why} for rb, pkg, why in self.failures],
        }


def collect(policy: Policy, artifacts: Sequence[Artifact], bundle: Path, proxy: ProxyArg = None,
            progress: ProgressFn | None = None, tar: Path | None = None) -> CollectReport:
    """Fetch every rebuilder's documents for *artifacts* into the directory *bundle*.

    Every rebuilder of the policy is asked for every package, whatever the
    ``[[repository]]`` rules say: the machine that verifies may see the
    packages under other repository ids (in Qubes dom0 they all come from
    ``qubes-dom0-cached``).  A document the rebuilder does not have is
    listed as missing, and an older copy of it in *bundle* is removed, so
    the bundle says what the rebuilders say now.  Raises
    :class:`CollectError` if the bundle cannot be written.
    """
    started = time.monotonic()
    settings = replace(policy.fetch, bundle=None, offline=False)  # collecting fills the bundle
    report = CollectReport(Path(bundle), list(artifacts),
                           created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    try:
        report.bundle.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CollectError(f"cannot create the bundle directory {bundle}: {e.strerror or e}") from None
    transport = make_transport(settings, proxy)
    writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="rbg-bundle")
    run = _Run(report, transport, writers, progress, len(artifacts))
    try:
        future = transport.run(run.all(policy.rebuilders, report.artifacts))
        future.result()
        for write in run.writes:
            write.result()  # a write that failed raises CollectError here
    finally:
        writers.shutdown(wait=True)
        transport.close()
    for entry in report.by_status("pending"):  # its rebuilder's deadline ended the request
        entry.status, entry.detail = "error", "no answer within the deadline"
    _write(report.bundle / MANIFEST, json.dumps(report.manifest(policy), indent=1, sort_keys=True).encode() + b"\n")
    if tar is not None:
        write_tar(report, tar)
        report.tar = tar
    report.seconds = time.monotonic() - started
    return report


@dataclass
class _Run:
    """The state of one :func:`collect` run; its coroutines run on the transport's loop."""

    report: CollectReport
    transport: Transport
    writers: ThreadPoolExecutor
    progress: ProgressFn | None
    total: int
    writes: list[Future] = field(default_factory=list)
    done: int = 0

    async def all(self, rebuilders: Sequence[Rebuilder], artifacts: Sequence[Artifact]) -> None:
        await asyncio.gather(*(self.package(rebuilders, a) for a in artifacts))

    async def package(self, rebuilders: Sequence[Rebuilder], artifact: Artifact) -> None:
        await asyncio.gather(*(self.rebuilder(rb, artifact) for rb in rebuilders))
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    async def rebuilder(self, rb: Rebuilder, artifact: Artifact) -> None:
        """One rebuilder's documents for one package, bounded like a verification job."""
        async with self.transport.slots():
            deadline = time.monotonic() + self.transport.settings.deadline
            try:
                async with asyncio.timeout_at(deadline + 0.2):
                    await self._documents(rb, artifact, deadline)
            except TimeoutError:
                self.report.failures.append((rb.name, artifact.label, "no answer within the deadline"))
            except FetchError as e:  # a name the layout cannot use, a broken rebuilderd answer
                self.report.failures.append((rb.name, artifact.label, str(e)))
            except Exception as e:  # noqa: BLE001 - a bug costs this document, not the whole bundle
                self.report.failures.append((rb.name, artifact.label, f"internal error: {e!r:.300}"))

    async def _documents(self, rb: Rebuilder, artifact: Artifact, deadline: float) -> None:
        root = rb.url if rb.layout == "rebuilderd" else location(rb.url)
        if rb.layout != "rebuilderd":
            for loc in evidence_locations(rb, artifact):
                await self.take(rb, loc, root, artifact, deadline)
            return
        lookup = rebuilderd_lookup(rb.url, artifact)
        page = await self.take(rb, lookup, root, artifact, deadline)
        if page is not None:
            for loc in rebuilderd_attestations(rb.url, Document(lookup.url, page), artifact):
                await self.take(rb, loc, root, artifact, deadline)

    async def take(self, rb: Rebuilder, loc: Location, root: str, artifact: Artifact,
                   deadline: float) -> bytes | None:
        """Fetch one document and queue its write; its body, or None if it was not had."""
        if rb.name in BUNDLE_RESERVED or "/" in rb.name or rb.name in (".", ".."):
            raise FetchError(f"rebuilder name {rb.name!r} cannot name a directory in a bundle")
        path = f"{rb.name}/{loc.relpath}"
        entry = self.report.entries.get(path)
        first = entry is None
        if first:
            entry = self.report.entries[path] = Entry(rb.name, loc.url, path)
        entry.packages.append(artifact.filename)
        try:
            body = await self.transport.fetch(loc.url, deadline, root)
        except EvidenceMissing as e:
            if first:
                entry.status, entry.detail = "missing", str(e)
                self.writes.append(self.writers.submit(_forget, self.report.bundle / path))
            return None
        except FetchError as e:
            if entry.status != "collected":
                entry.status, entry.detail = "error", str(e)
            return None
        if entry.status != "collected":
            entry.status, entry.sha256, entry.size = "collected", hashlib.sha256(body).hexdigest(), len(body)
            self.writes.append(self.writers.submit(_write, self.report.bundle / path, body))
        return body


def _write(path: Path, body: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, body)
    except OSError as e:
        raise CollectError(f"cannot write {path}: {e.strerror or e}") from None


def _forget(path: Path) -> None:
    """Remove an older copy of a document the rebuilder no longer has."""
    try:
        if path.is_file() or path.is_symlink():
            path.unlink()
    except OSError as e:
        raise CollectError(f"cannot remove the outdated {path}: {e.strerror or e}") from None


def write_tar(report: CollectReport, tar: Path) -> None:
    """One tar file holding the documents collected and the manifest: plain
    regular files named ``<rebuilder>/<path>``, owned by 0:0, mode 0644."""
    names = [e.path for e in report.by_status("collected")] + [MANIFEST]

    def write(fd: int) -> None:
        with os.fdopen(os.dup(fd), "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in sorted(names):
                source = report.bundle / name
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = source.stat().st_size, 0o644, int(time.time())
                with source.open("rb") as f:
                    tf.addfile(info, f)

    try:
        tar.parent.mkdir(parents=True, exist_ok=True)
        write_atomic_with(tar, write)
    except OSError as e:
        raise CollectError(f"cannot write {tar}: {e.strerror or e}") from None
