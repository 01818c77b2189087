"""Per-download state: relay, verify, and answer apt.

The flow for one package (``600 URI Acquire`` of a .deb):

1. The request goes to apt's inner method at once (the download starts).
2. On another thread the package is identified from apt's records and
   handed to :meth:`rebuildgate.verify.Verifier.submit` with apt's
   ``Expected-SHA256``: rebuilders are asked while the file downloads, and
   all queued packages are verified concurrently.
3. When the inner method reports ``201 URI Done``, a finisher thread hashes
   the file, checks it against apt's hashes and reads what the package says
   it is from its control file (halts and the allowlist are judged on that,
   never on the index's name, version or source); once the verdict is in
   (bounded by the policy's fetch deadline) apt gets either the ``201`` or
   a ``400 URI Failure`` with one line saying why.  The answer is sent by
   whichever sees the verdict first: the verdict's done-callback on the
   fetcher's loop (no thread to wake on the way: apt refills its pipeline
   only as answers come back, so every millisecond here is paid once per
   pipeline round) or the finisher's own bounded wait.  Nothing else
   waits: other messages keep flowing in both directions.

Index files and everything that is not a package pass through untouched,
apart from the ``rebuildgate+`` prefix of their URIs.  Every failure on the
way (a bug included) ends as a ``400 URI Failure`` for that download: the
gate fails closed and never leaves apt waiting.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from rebuildgate.errors import FetchError, PackageError, one_line
from rebuildgate.model import Artifact
from rebuildgate.pkginfo import file_digests, read_deb

from . import protocol
from .records import AptRecords, is_package, make_artifact

PREFIX = "rebuildgate+"
_HEX = re.compile(r"[0-9a-f]+")
#: Finisher threads: each waits for one verdict; apt pipelines at most
#: ``Acquire::Max-Pipeline-Depth`` (10) downloads per queue, so this is ample.
FINISHERS = 64
#: Bound on identifying a package in apt's records (opening apt's cache);
#: the verdict itself is bounded by the policy's fetch deadline.
RESOLVE_TIMEOUT = 120.0


class PendingLike(Protocol):
    def result(self, file: Artifact | None = None): ...

    def add_done_callback(self, fn: Callable[[], None]) -> None: ...


class VerifierLike(Protocol):
    def submit(self, artifact: Artifact) -> PendingLike: ...


@dataclass
class Item:
    """One download apt asked for, under the URI apt used (with the prefix)."""

    uri: str
    filename: str
    package: bool
    repo_uri: str | None = None
    expected_sha256: str | None = None
    expected_sha512: str | None = None
    verification: "Future[PendingLike] | None" = None
    sha256: str | None = None  # of the downloaded file, once checked
    file: Artifact | None = None  # what the downloaded file says it is
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def to_inner(uri: str) -> str:
    return uri[len(PREFIX):] if uri.startswith(PREFIX) else uri


def to_outer(uri: str) -> str:
    if not uri or uri.startswith(PREFIX) or ":" not in uri:
        return uri
    return PREFIX + uri


class Gate:
    """Relays between apt and the inner method and gates package downloads.

    ``send_apt`` and ``send_inner`` write one message each (thread-safe).
    ``verifier`` is None when the policy could not be loaded; ``refusal``
    then says why, and every package download is refused with it.
    """

    def __init__(self, send_apt: Callable[[protocol.Message], None],
                 send_inner: Callable[[protocol.Message], bool],
                 verifier: VerifierLike | None, refusal: str | None,
                 archives_dir: str, records: AptRecords | None,
                 debug: Callable[[str], None] | None = None,
                 inner_proxy: Callable[[str], str | None] | None = None) -> None:
        self.send_apt = send_apt
        self.send_inner = send_inner
        self.verifier = verifier
        self.refusal = refusal
        if verifier is None and not refusal:
            self.refusal = "rebuildgate: no verifier"
        self.archives_dir = archives_dir
        self.records = records
        self.debug = debug or (lambda text: None)
        self.debugging = debug is not None  # messages are only formatted when they are shown
        #: The ``Proxy`` field apt would give its own method for a URL (what its
        #: Proxy-Auto-Detect program says), or None; may raise FetchError.
        self.inner_proxy = inner_proxy
        self.items: dict[str, Item] = {}
        self._lock = threading.Lock()
        self.inner_gone: str | None = None
        self.warnings: list[str] = []  # shown by apt with the next package download
        # apt_pkg is not thread-safe: every lookup in apt's records runs here.
        self._resolver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rbg-resolve")
        self._finishers = ThreadPoolExecutor(max_workers=FINISHERS, thread_name_prefix="rbg-finish")

    # -- apt -> method --------------------------------------------------------

    def from_apt(self, message: protocol.Message) -> None:
        if message.code == protocol.URI_ACQUIRE:
            self._acquire(message)
            return
        self._forward_to_inner(message, None)

    def _acquire(self, message: protocol.Message) -> None:
        uri = message.get("URI") or ""
        filename = message.get("Filename") or ""
        item = Item(uri=uri, filename=filename, package=is_package(uri, filename, self.archives_dir),
                    repo_uri=message.get("Target-Repo-URI"),
                    expected_sha256=_hex(message.get("Expected-SHA256"), 64),
                    expected_sha512=_hex(message.get("Expected-SHA512"), 128))
        if item.package and self.warnings:
            warnings, self.warnings = self.warnings, []
            for text in warnings:
                self.send_apt(protocol.compose(protocol.WARNING, "Warning", URI=uri, Message=text))
        if item.package and self.refusal:
            self._fail(item, self.refusal)
            return
        if item.package and item.expected_sha256 and not self.inner_gone:
            # Before the download starts, so the 201 can never overtake it.
            item.verification = self._resolver.submit(self._start_verification, item, item.expected_sha256,
                                                      item.expected_sha512)
        with self._lock:
            self.items[uri] = item
        self._forward_to_inner(message, item)

    def _forward_to_inner(self, message: protocol.Message, item: Item | None) -> bool:
        if self.inner_gone:
            if item is not None:
                self._fail(item, self.inner_gone)
            return False
        relayed = protocol.Message(message.code, message.text, list(message.fields))
        for name in ("URI",):
            value = relayed.get(name)
            if value:
                relayed.set(name, to_inner(value))
        if relayed.code == protocol.URI_ACQUIRE and self.inner_proxy is not None and not relayed.get("Proxy"):
            try:
                proxy = self.inner_proxy(relayed.get("URI") or "")
            except FetchError as e:
                if item is not None:
                    self._fail(item, one_line(f"rebuildgate: {e}"))
                return False
            if proxy:
                relayed.set("Proxy", proxy)
        if not self.send_inner(relayed):
            if item is not None:
                self._fail(item, "rebuildgate: apt's method for this scheme is not running")
            return False
        return True

    def _start_verification(self, item: Item, sha256: str, sha512: str | None) -> PendingLike:
        artifact = make_artifact(item.uri, item.filename, item.repo_uri, sha256, sha512, self.records)
        if self.debugging:
            self.debug(f"verifying {artifact.label} (source {artifact.source}, {artifact.filename}, sha256 "
                       f"{artifact.sha256[:16]}..., repo {artifact.repo}) as {_whoami()}")
        assert self.verifier is not None
        return self.verifier.submit(artifact)

    # -- inner method -> apt --------------------------------------------------

    def from_inner(self, message: protocol.Message) -> None:
        if message.code == protocol.CAPABILITIES:
            return  # told apt already
        for name in ("URI", "New-URI"):
            value = message.get(name)
            if value:
                message.set(name, to_outer(value))
        uri = message.get("URI") or ""
        with self._lock:
            item = self.items.get(uri)
        if item is not None and message.code == protocol.URI_DONE and item.package:
            self._finishers.submit(self._finish, item, message)
            return
        if item is not None and message.code in (protocol.URI_DONE, protocol.URI_FAILURE, protocol.REDIRECT):
            self._close(item)
        self.send_apt(message)

    def inner_exited(self, status: int | None) -> None:
        """The inner method died: every open download fails, later ones too."""
        self.inner_gone = (f"rebuildgate: apt's method for this scheme exited unexpectedly"
                           f"{'' if status is None else f' (status {status})'}")
        with self._lock:
            open_items = list(self.items.values())
        for item in open_items:
            self._fail(item, self.inner_gone)

    # -- the decision -----------------------------------------------------------

    def _finish(self, item: Item, done: protocol.Message) -> None:
        """Check the downloaded file, then answer apt as soon as the verdict is in.

        The answer usually comes from the verdict's done-callback, on the
        fetcher's loop thread, the moment the last rebuilder's document is
        checked; this thread's own bounded wait is the fallback.  Whichever
        comes first answers (:meth:`_close` lets only one through).
        """
        path = done.get("Filename") or item.filename
        try:
            pending = self._check_file(item, done, path)
            if pending is None:
                return
            pending.add_done_callback(lambda: self._answer_safely(item, done, path, pending))
        except Exception as e:  # noqa: BLE001 - a bug fails this download, never opens it
            self._internal_error(item, path, e)
            return
        self._answer_safely(item, done, path, pending)

    def _answer_safely(self, item: Item, done: protocol.Message, path: str, pending: PendingLike) -> None:
        """Wait for the verdict and answer; never raises (it also runs on the fetcher's loop)."""
        try:
            self._answer(item, done, path, pending.result(item.file))
        except Exception as e:  # noqa: BLE001 - a bug fails this download, never opens it
            self._internal_error(item, path, e)

    def _internal_error(self, item: Item, path: str, error: Exception) -> None:
        self._refuse(item, path, f"rebuildgate: internal error while verifying {item.uri}: "
                                 f"{type(error).__name__}: {error}")

    def _check_file(self, item: Item, done: protocol.Message, path: str) -> PendingLike | None:
        """The file's hashes against every claim; its pending verdict, or None once refused."""
        try:
            # sha512 only matters when the verification has to start from the file.
            sha256, sha512 = file_digests(path, with_sha512=item.verification is None)
        except PackageError as e:
            self._fail(item, f"rebuildgate: cannot read the downloaded file: {e}")
            return None
        claims = [("the repository index", item.expected_sha256), ("apt's download method", _hex(done.get("SHA256-Hash"), 64))]
        for who, claimed in claims:
            if claimed and claimed != sha256:
                self._refuse(item, path, f"rebuildgate: {_label(item)}: blocked: the downloaded file has sha256 "
                                         f"{sha256}, but {who} says {claimed}")
                return None
        # The index's sha512 may have been handed to the rebuilders' comparison:
        # the download method's sha512 of the file must agree with it too.
        reported512 = _hex(done.get("SHA512-Hash"), 128)
        if item.expected_sha512 and reported512 and reported512 != item.expected_sha512:
            self._refuse(item, path, f"rebuildgate: {_label(item)}: blocked: the downloaded file has sha512 "
                                     f"{reported512[:32]}..., but the repository index says "
                                     f"{item.expected_sha512[:32]}...")
            return None
        try:
            item.file = read_deb(path, digests=(sha256, sha512))
        except PackageError as e:
            self._refuse(item, path, f"rebuildgate: {_label(item)}: blocked: the downloaded file is not a "
                                     f"readable Debian package ({e})")
            return None
        if item.verification is not None:
            pending = item.verification.result(timeout=RESOLVE_TIMEOUT)
        else:  # apt had no sha256 for it: verify the file as it is
            pending = self._resolver.submit(self._start_verification, item, sha256, sha512).result(
                timeout=RESOLVE_TIMEOUT)
        item.sha256 = sha256
        return pending

    def _answer(self, item: Item, done: protocol.Message, path: str, verdict: Any) -> None:
        """Send apt the 201, or refuse; once per item, whoever calls first."""
        if item.done:
            return
        if verdict.artifact.sha256.lower() != item.sha256:
            self._refuse(item, path, f"rebuildgate: {_label(item)}: blocked: verified sha256 "
                                     f"{verdict.artifact.sha256} is not the downloaded file's {item.sha256}")
            return
        if self.debugging:
            self.debug(f"{verdict.summary()} [file {path}]")
        if not verdict.allowed:
            lost = getattr(verdict, "unlogged", None)
            self._refuse(item, path, f"rebuildgate: {verdict.summary()}"
                                     + (f" (decision log line not written: {lost})" if lost else ""))
            return
        warnings = [f"rebuildgate: {verdict.summary()}"] if verdict.relaxed_by else []
        if getattr(verdict, "unlogged", None):
            warnings.append(f"rebuildgate: {_label(item)}: the decision log line was not written: {verdict.unlogged}")
        if not self._close(item):  # answered already (the other path, or a failure)
            return
        for warning in warnings:
            self.send_apt(protocol.compose(protocol.WARNING, "Warning", URI=item.uri, Message=warning))
        self.send_apt(done)

    # -- answers ------------------------------------------------------------------

    def _close(self, item: Item) -> bool:
        """Mark *item* answered; False if it already was (answer only once)."""
        with item.lock:
            if item.done:
                return False
            item.done = True
        with self._lock:
            if self.items.get(item.uri) is item:
                del self.items[item.uri]
        return True

    def _fail(self, item: Item, reason: str) -> None:
        if self._close(item):
            self.send_apt(protocol.compose(protocol.URI_FAILURE, "URI Failure", URI=item.uri, Message=reason))

    def _refuse(self, item: Item, path: str, reason: str) -> None:
        """Block a package: remove apt's partial copy (never a file:// original), then fail.

        Only if nothing was answered yet: a file apt was already told is
        done is never touched.
        """
        if not self._close(item):
            return
        if path == item.filename and item.filename.startswith(self.archives_dir.rstrip("/") + "/"):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.send_apt(protocol.compose(protocol.URI_FAILURE, "URI Failure", URI=item.uri, Message=reason))

    def close(self) -> None:
        self._resolver.shutdown(wait=False, cancel_futures=True)
        self._finishers.shutdown(wait=False, cancel_futures=True)


def _hex(value: str | None, length: int) -> str | None:
    if not value:
        return None
    value = value.strip().lower()
    if len(value) != length or not _HEX.fullmatch(value):
        return None
    return value


def _label(item: Item) -> str:
    from .records import uri_basename

    return uri_basename(item.uri) or item.uri


def _whoami() -> str:
    from .sandbox import current

    return str(current())
