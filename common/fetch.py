"""Fetch evidence from rebuilders: HTTP(S) and local directories, in parallel.

Rebuilders are untrusted network peers, so every request is bounded: a
connect and a read timeout, an overall deadline per artifact, a cap on the
body size (bodies are streamed, never held beyond the cap), compression
refused (no decompression bombs), and redirects followed only within the
same scheme and host.  Whatever goes wrong costs that rebuilder its vote
and nothing else: it becomes a :class:`~rebuildgate.errors.FetchError`.

``file://`` rebuilders read a directory that another machine filled (Qubes
dom0 has no network); paths are resolved and must stay inside that
directory, symlinks included.

URL layouts:

* ``package-rebuilder``: ``{url}/sources/{source}/{version}/metadata``
  (version without epoch, as on disk).
* ``rebuilderd``: ``{url}/api/v1/packages/binary?name=&version=&architecture=``
  then ``{url}/api/v1/builds/{build_id}/artifacts/{artifact_id}/attestation``
  for each record.
* ``template``: the admin's ``url_template`` with ``{url} {source} {name}
  {version} {upstream_version} {arch} {filename} {sha256}``.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import socket
import stat
import threading
import time
import urllib.request
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

from .cache import DocumentCache
from .errors import EvidenceMissing, FetchError
from .model import Artifact
from .policy import FetchSettings, Rebuilder

MAX_REDIRECTS = 3
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_REBUILDERD_RECORDS = 8
USER_AGENT = "rebuildgate/0.1"


@dataclass(frozen=True)
class Document:
    """A fetched body and where it came from."""

    url: str
    body: bytes


def _component(value: str | None, what: str) -> str:
    """Validate one value that goes into a URL or path segment.

    Names and versions come from repository metadata and package headers,
    which an attacker may control: a segment can never climb out of or
    into another directory, and must be text a URL can carry.
    """
    if not value:
        raise FetchError(f"no {what} known for this package, cannot locate evidence")
    if value in (".", "..") or _UNSAFE.search(value):
        raise FetchError(f"unsafe {what} {value[:60]!r} refused")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FetchError(f"{what} {value[:60]!r} is not valid UTF-8; refused") from None
    return value


def location(url: str) -> str:
    """The internal form of a policy URL: ``file://`` + a plain path, decoded once.

    Evidence paths are built from raw, validated segments appended to this,
    and read without any further URL decoding, so ``%41``, ``#`` or ``?`` in
    a version stay what they are.  http(s) URLs are returned unchanged.
    """
    if url.startswith("file://"):
        return "file://" + unquote(urlsplit(url).path)
    return url


# --------------------------------------------------------------------------
# The deadline watchdog.  Per-read timeouts cannot stop a peer that sends one
# header byte every few seconds; the watchdog shuts the socket down when the
# request's deadline passes, whatever the request is doing.


class _Guard:
    """One request's deadline, and the socket to shut when it passes."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.sock: Any = None
        self.fired = False
        self.done = False
        self._lock = threading.Lock()

    def attach(self, sock: Any) -> None:
        with self._lock:
            self.sock = sock
            fire = self.fired
        if fire:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            sock = self.sock
        if sock is not None:
            _shutdown(sock)


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _Watchdog:
    """One daemon thread that fires guards at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Guard]] = []
        self._cond = threading.Condition()
        self._counter = 0
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float) -> _Guard:
        guard = _Guard(deadline)
        with self._cond:
            self._counter += 1
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, self._counter, guard))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rbg-watchdog", daemon=True)
                self._thread.start()
            elif earliest:  # the thread sleeps until the earliest deadline: wake it only for an earlier one
                self._cond.notify()
        return guard

    def disarm(self, guard: _Guard) -> None:
        with guard._lock:
            guard.done = True  # dropped from the heap when its time comes

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, guard = heapq.heappop(self._heap)
                guard.fire()


_WATCHDOG = _Watchdog()
_current = threading.local()


class _WatchedConnection:
    """Hands the connection's socket to the current request's guard: as soon
    as it exists (a TLS handshake can stall too) and again for every request
    on a kept-alive connection."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        guard = getattr(_current, "guard", None)
        if guard is not None:
            guard.attach(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        guard = getattr(_current, "guard", None)
        if guard is not None:
            guard.attach(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


def _adapter(pool_maxsize: int, ca_certs: str | None) -> Any:
    """A requests adapter whose connections are watched by the watchdog.

    Its pool managers verify TLS against *ca_certs* (None: the system's
    default store) themselves, since requests are sent through them directly.
    """
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchedHTTP(_WatchedConnection, HTTPConnection):
        pass

    class WatchedHTTPS(_WatchedConnection, HTTPSConnection):
        pass

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTP

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPS

    pools = {"http": HTTPPool, "https": HTTPSPool}

    tls = {"cert_reqs": "CERT_REQUIRED", **({"ca_certs": ca_certs} if ca_certs else {})}

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **{**kwargs, **tls})
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **{**kwargs, **tls})
            manager.pool_classes_by_scheme = pools
            return manager

    return Adapter(pool_connections=32, pool_maxsize=pool_maxsize, max_retries=0)


class _Timeout(FetchError):
    """A rebuilder that did not answer in time (trips the per-host breaker)."""


class Transport:
    """GET with limits, for http(s):// and file:// locations; thread-safe.

    Besides the limits in the module docstring:

    * one request per URL: concurrent callers share it, and recent bodies
      are kept (at most ``MEMO_BYTES``) for the other binaries of a source;
    * a host that timed out once is not asked again by this Transport (one
      apt or dnf run), so a dead rebuilder costs one deadline, not one per
      package.
    """

    MEMO_BYTES = 8 * 1024 * 1024

    def __init__(self, settings: FetchSettings, proxy: str | None = None,
                 cache: DocumentCache | None = None) -> None:
        import requests

        self.settings = settings
        self.cache = cache
        self.session = requests.Session()
        adapter = _adapter(max(settings.max_workers, 4), _ca_bundle())
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        self._headers = dict(self.session.headers)
        # The environment is read once here, not on every request (requests'
        # trust_env re-reads proxies and netrc per call: a third of its cost).
        self.session.trust_env = False
        self.proxy = settings.proxy or proxy  # the policy's, else the package manager's
        self._env_proxies = {} if self.proxy else urllib.request.getproxies()
        self._proxies_by_host: dict[str, dict[str, str]] = {}
        self._inflight: dict[str, Future[bytes]] = {}
        self._done: OrderedDict[str, bytes | None] = OrderedDict()  # None: missing (404)
        self._done_bytes = 0
        self._tripped: dict[str, str] = {}
        self._lock = threading.Lock()

    def proxies_for(self, url: str) -> dict[str, str]:
        """Proxy for *url*: explicit one, else $http(s)_proxy unless $no_proxy matches."""
        if self.proxy:
            return {"http": self.proxy, "https": self.proxy}
        if not self._env_proxies:
            return {}
        host = urlsplit(url).netloc
        found = self._proxies_by_host.get(host)
        if found is None:
            bypass = urllib.request.proxy_bypass_environment(host.rsplit("@", 1)[-1], self._env_proxies)
            found = {} if bypass else {k: v for k, v in self._env_proxies.items() if k in ("http", "https")}
            self._proxies_by_host[host] = found
        return found

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, deadline: float, root: str | None = None, use_cache: bool = True) -> bytes:
        """Fetch *url* (an internal location, see :func:`location`).

        ``root`` bounds file:// reads; ``use_cache=False`` skips the on-disk
        cache (halt feeds must be fresh).
        """
        with self._lock:
            if url in self._done:
                body = self._done[url]
                self._done.move_to_end(url)
                if body is None:
                    raise EvidenceMissing(f"no evidence at {url}")
                return body
            fut = self._inflight.get(url)
            owner = fut is None
            if owner:
                fut = self._inflight[url] = Future()
        if not owner:
            try:
                return fut.result(timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise FetchError(f"no answer within the deadline from {url}") from None
        try:
            body = self._get(url, deadline, root, use_cache)
        except EvidenceMissing as e:
            self._remember(url, None)
            fut.set_exception(e)
            raise
        except BaseException as e:
            with self._lock:  # transient errors are retried by the next caller
                self._inflight.pop(url, None)
            fut.set_exception(e)
            raise
        self._remember(url, body)
        fut.set_result(body)
        return body

    def _remember(self, url: str, body: bytes | None) -> None:
        with self._lock:
            self._inflight.pop(url, None)
            self._done[url] = body
            self._done_bytes += len(body or b"")
            while self._done_bytes > self.MEMO_BYTES and self._done:
                _, old = self._done.popitem(last=False)
                self._done_bytes -= len(old or b"")

    def _get(self, url: str, deadline: float, root: str | None, use_cache: bool) -> bytes:
        if url.startswith("file://"):
            return self._read_file(url, root)
        cache = self.cache if use_cache else None
        if cache:
            cached = cache.get(url)
            if cached is not None:
                return cached
        host = urlsplit(url).netloc
        tripped = self._tripped.get(host)
        if tripped:
            raise FetchError(f"{host} not asked again: it timed out earlier in this run ({tripped})")
        try:
            body = self._http(url, deadline)
        except _Timeout as e:
            self._tripped.setdefault(host, str(e)[:120])
            raise
        if cache:
            cache.put(url, body)
        return body

    def _read_file(self, url: str, root: str | None) -> bytes:
        """Read a local evidence file: a regular file inside *root*, never a FIFO or device."""
        path = Path(url[len("file://"):])
        base = Path(root[len("file://"):]) if root and root.startswith("file://") else path.parent
        try:
            real, real_base = path.resolve(strict=True), base.resolve(strict=True)
        except FileNotFoundError:
            raise EvidenceMissing(f"no evidence at {path}") from None
        except (OSError, RuntimeError, ValueError) as e:
            raise FetchError(f"cannot read {path}: {e}") from None
        if real != real_base and real_base not in real.parents:
            raise FetchError(f"{path} leads outside the evidence directory {base}")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            raise FetchError(f"cannot read {path}: {e.strerror or e}") from None
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise EvidenceMissing(f"no evidence at {path} (a directory)")
            if not stat.S_ISREG(mode):
                raise FetchError(f"{path} is not a regular file; refused")
            try:
                body = f.read(self.settings.max_bytes + 1)
            except OSError as e:
                raise FetchError(f"cannot read {path}: {e.strerror or e}") from None
        if len(body) > self.settings.max_bytes:
            raise FetchError(f"{path} is larger than max_bytes ({self.settings.max_bytes})")
        return body

    def _http(self, url: str, deadline: float) -> bytes:
        guard = _WATCHDOG.arm(deadline)
        _current.guard = guard
        try:
            return self._http_guarded(url, deadline, guard)
        finally:
            _current.guard = None
            _WATCHDOG.disarm(guard)

    def _http_guarded(self, url: str, deadline: float, guard: _Guard) -> bytes:
        from urllib3 import exceptions as u3

        s = self.settings
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout(f"deadline of {s.deadline:g}s passed before {current} answered")
            timeout = (min(s.connect_timeout, remaining), min(s.read_timeout, remaining))
            try:
                resp = self._send(current, timeout)
            except u3.NewConnectionError as e:  # (a subclass of ConnectTimeoutError, for history's sake)
                raise FetchError(f"cannot connect to {_host(current)}: {_short(e)}") from None
            except u3.ConnectTimeoutError:
                raise _Timeout(f"connect to {_host(current)} timed out") from None
            except u3.ReadTimeoutError:
                raise _Timeout(f"{_host(current)} did not answer within {timeout[1]:g}s") from None
            except (u3.HTTPError, OSError, ValueError) as e:
                if guard.fired:
                    raise _Timeout(f"{_host(current)} did not answer within the deadline of {s.deadline:g}s") from None
                if isinstance(e, u3.ProxyError):
                    raise FetchError(f"proxy refused {current}: {_short(e)}") from None
                if isinstance(e, ConnectionError):
                    raise FetchError(f"cannot connect to {_host(current)}: {_short(e)}") from None
                raise FetchError(f"request to {current} failed: {_short(e)}") from None
            try:
                if resp.status in (301, 302, 303, 307, 308):
                    target = urljoin(current, resp.headers.get("Location", ""))
                    a, b = urlsplit(current), urlsplit(target)
                    if (a.scheme, a.netloc) != (b.scheme, b.netloc):
                        raise FetchError(f"{_host(current)} redirects to another host or scheme ({target[:80]}); refused")
                    current = target
                    resp.close()
                    continue
                if resp.status in (404, 410):
                    raise EvidenceMissing(f"no evidence at {current} (HTTP {resp.status})")
                if resp.status != 200:
                    raise FetchError(f"{current} answered HTTP {resp.status}")
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > s.max_bytes:
                    raise FetchError(f"{current} sends {length} bytes, more than max_bytes ({s.max_bytes})")
                body = self._read_body(resp, current, deadline, guard)
            except BaseException:
                resp.close()  # drop the connection: it may hold an unread or hostile body
                raise
            resp.release_conn()  # fully read: back to the pool for keep-alive
            return body
        raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times")

    def _send(self, url: str, timeout: tuple[float, float]) -> Any:
        """One GET through the connection pools of requests' adapter.

        ``Session.get`` and even ``HTTPAdapter.send`` rebuild a request object,
        merge cookies, hooks and settings, and wrap the response, on every
        call; none of it applies here (no cookies, no auth, the environment
        read once, redirects checked by hand), and it is most of the CPU a
        fetch costs.  The pools are requests' own (with its proxy headers);
        TLS is verified by them (see :func:`_adapter`).
        """
        import urllib3

        proxy = self.proxies_for(url).get(urlsplit(url).scheme)
        adapter = self.session.get_adapter(url)
        manager = adapter.proxy_manager_for(proxy) if proxy else adapter.poolmanager
        return manager.urlopen("GET", url, headers=self._headers, redirect=False, retries=False,
                               preload_content=False, decode_content=False,
                               timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))

    def _read_body(self, resp: Any, url: str, deadline: float, guard: _Guard) -> bytes:
        """Read the body one socket read at a time, so a trickling peer hits
        the deadline (a plain ``read(n)`` would wait for all n bytes)."""
        import urllib3

        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"{url} sent a {encoding[:20]}-encoded body though none was asked for")
        chunks, size = [], 0
        try:
            while True:
                chunk = resp.read1(65536, decode_content=False)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.settings.max_bytes:
                    raise FetchError(f"{url} sent more than max_bytes ({self.settings.max_bytes})")
                if time.monotonic() > deadline:
                    raise _Timeout(f"{url} too slow: deadline of {self.settings.deadline:g}s passed mid-body")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if guard.fired:
                raise _Timeout(f"{url} too slow: deadline of {self.settings.deadline:g}s passed mid-body") from None
            raise FetchError(f"reading {url} failed: {_short(e)}") from None
        if guard.fired:  # the socket was shut mid-body: what we have is truncated
            raise _Timeout(f"{url} too slow: deadline of {self.settings.deadline:g}s passed mid-body")
        return b"".join(chunks)


def _ca_bundle() -> str | None:
    """The system's trust store, as apt and dnf use it, unless the environment names one."""
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        if os.environ.get(var):
            return os.environ[var]
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if os.path.exists(path):
            return path
    return None  # OpenSSL's default store


def _host(url: str) -> str:
    return urlsplit(url).netloc or url[:60]


def _short(e: BaseException) -> str:
    text = str(e)
    # urllib3 wraps the useful part deep inside; keep the last clause.
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker)[-1]
    return text.strip("()'\" ")[:160]


class EvidenceSource:
    """Where one rebuilder publishes, and how to get its documents for an artifact."""

    def __init__(self, rebuilder: Rebuilder, transport: Transport) -> None:
        self.rebuilder = rebuilder
        self.transport = transport
        self.is_file = rebuilder.url.startswith("file://")
        self.base = location(rebuilder.url)

    def _seg(self, value: str | None, what: str) -> str:
        value = _component(value, what)
        return value if self.is_file else quote(value, safe="+~")

    def urls(self, artifact: Artifact) -> list[str]:
        rb = self.rebuilder
        if rb.layout == "package-rebuilder":
            source = self._seg(artifact.source or artifact.name, "source name")
            version = self._seg(artifact.upstream_version, "version")
            return [f"{self.base}/sources/{source}/{version}/metadata"]
        if rb.layout == "template":
            assert rb.url_template
            values = {
                "url": self.base,
                "source": self._seg(artifact.source or artifact.name, "source name"),
                "name": self._seg(artifact.name, "package name"),
                "version": self._seg(artifact.version, "version"),
                "upstream_version": self._seg(artifact.upstream_version, "version"),
                "arch": self._seg(artifact.arch, "architecture") if "{arch}" in rb.url_template else "",
                "filename": self._seg(artifact.filename, "file name"),
                "sha256": self._seg(artifact.sha256.lower(), "sha256"),
            }
            return [rb.url_template.format(**values)]
        raise FetchError(f"layout {rb.layout} has no fixed URL")

    def documents(self, artifact: Artifact, deadline: float) -> list[Document]:
        if self.rebuilder.layout == "rebuilderd":
            return self._rebuilderd(artifact, deadline)
        return [Document(u, self.transport.get(u, deadline, self.base)) for u in self.urls(artifact)]

    def _rebuilderd(self, artifact: Artifact, deadline: float) -> list[Document]:
        rb = self.rebuilder
        query = urlencode({
            "name": _component(artifact.name, "package name"),
            "version": _component(artifact.version, "version"),
            "architecture": _component(artifact.arch, "architecture"),
        })
        lookup = f"{rb.url}/api/v1/packages/binary?{query}"
        body = self.transport.get(lookup, deadline, rb.url)
        try:
            page = json.loads(body)
            records = page["records"] if isinstance(page, dict) else page
            if not isinstance(records, list):
                raise TypeError("records is not a list")
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise FetchError(f"{lookup} is not a rebuilderd package list: {str(e)[:80]}") from None
        ids = []
        for rec in records:
            if not isinstance(rec, dict) or rec.get("name") not in (None, artifact.name):
                continue
            build, art = rec.get("build_id"), rec.get("artifact_id")
            if all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (build, art)):
                ids.append((build, art))
        if not ids:
            raise EvidenceMissing(f"{_host(rb.url)} has no rebuild of {artifact.label}")
        docs, errors = [], []
        for build, art in ids[:MAX_REBUILDERD_RECORDS]:
            url = f"{rb.url}/api/v1/builds/{build}/artifacts/{art}/attestation"
            try:
                docs.append(Document(url, self.transport.get(url, deadline, rb.url)))
            except FetchError as e:
                errors.append(e)
        if not docs:
            raise errors[0]
        return docs


def make_transport(settings: FetchSettings, proxy: str | None = None) -> Transport:
    cache = None
    if settings.cache_dir and settings.cache_ttl > 0:
        cache = DocumentCache(settings.cache_dir, settings.cache_ttl, settings.max_bytes)
    return Transport(settings, proxy, cache)

