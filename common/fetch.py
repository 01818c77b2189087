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

import json
import os
import threading
import urllib.request
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

from .cache import DocumentCache
from .errors import EvidenceMissing, FetchError
from .model import Artifact
from .policy import FetchSettings, Rebuilder

MAX_REDIRECTS = 3
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
    into another directory.
    """
    if not value:
        raise FetchError(f"no {what} known for this package, cannot locate evidence")
    if value in (".", "..") or "/" in value or "\\" in value or any(ord(c) < 32 for c in value):
        raise FetchError(f"unsafe {what} {value[:60]!r} refused")
    return value


class Transport:
    """GET with limits, for http(s):// and file:// URLs; thread-safe."""

    def __init__(self, settings: FetchSettings, proxy: str | None = None,
                 cache: DocumentCache | None = None) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.settings = settings
        self.cache = cache
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=32, pool_maxsize=max(settings.max_workers, 4), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        # The environment is read once here, not on every request (requests'
        # trust_env re-reads proxies and netrc per call: a third of its cost).
        self.session.trust_env = False
        self.session.verify = _ca_bundle()
        self.proxy = settings.proxy or proxy  # the policy's, else the package manager's
        self._env_proxies = {} if self.proxy else urllib.request.getproxies()
        self._proxies_by_host: dict[str, dict[str, str]] = {}
        self._memo: dict[str, Future[bytes]] = {}
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
        """Fetch *url* once per Transport: concurrent callers share one request.

        ``use_cache=False`` skips the on-disk cache (halt feeds must be fresh).
        """
        with self._lock:
            fut = self._memo.get(url)
            owner = fut is None
            if owner:
                if len(self._memo) > 4096:
                    self._memo.clear()
                fut = self._memo[url] = Future()
        if not owner:
            remaining = deadline - time.monotonic()
            try:
                return fut.result(timeout=max(remaining, 0.0))
            except TimeoutError:
                raise FetchError(f"no answer within the deadline from {url}") from None
        try:
            body = self._get(url, deadline, root, use_cache)
        except BaseException as e:
            fut.set_exception(e)
            if not isinstance(e, EvidenceMissing):
                with self._lock:  # transient errors are retried by the next caller
                    self._memo.pop(url, None)
            raise
        fut.set_result(body)
        return body

    def _get(self, url: str, deadline: float, root: str | None, use_cache: bool) -> bytes:
        if url.startswith("file://"):
            return self._read_file(url, root)
        cache = self.cache if use_cache else None
        if cache:
            cached = cache.get(url)
            if cached is not None:
                return cached
        body = self._http(url, deadline)
        if cache:
            cache.put(url, body)
        return body

    def _read_file(self, url: str, root: str | None) -> bytes:
        path = Path(unquote(urlsplit(url).path))
        base = Path(unquote(urlsplit(root).path)) if root else path.parent
        try:
            real, real_base = path.resolve(strict=True), base.resolve(strict=True)
        except FileNotFoundError:
            raise EvidenceMissing(f"no evidence at {path}") from None
        except (OSError, RuntimeError) as e:
            raise FetchError(f"cannot read {path}: {e}") from None
        if real != real_base and real_base not in real.parents:
            raise FetchError(f"{path} leads outside the evidence directory {base}")
        try:
            with open(real, "rb") as f:
                body = f.read(self.settings.max_bytes + 1)
        except IsADirectoryError:
            raise EvidenceMissing(f"no evidence at {path} (a directory)") from None
        except OSError as e:
            raise FetchError(f"cannot read {path}: {e.strerror or e}") from None
        if len(body) > self.settings.max_bytes:
            raise FetchError(f"{path} is larger than max_bytes ({self.settings.max_bytes})")
        return body

    def _http(self, url: str, deadline: float) -> bytes:
        import requests

        s = self.settings
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError(f"deadline of {s.deadline:g}s passed before {current} answered")
            timeout = (min(s.connect_timeout, remaining), min(s.read_timeout, remaining))
            try:
                resp = self.session.get(current, stream=True, timeout=timeout, allow_redirects=False,
                                        proxies=self.proxies_for(current))
            except requests.exceptions.ConnectTimeout:
                raise FetchError(f"connect to {_host(current)} timed out") from None
            except requests.exceptions.ReadTimeout:
                raise FetchError(f"{_host(current)} did not answer within {timeout[1]:g}s") from None
            except requests.exceptions.ProxyError as e:
                raise FetchError(f"proxy refused {current}: {_short(e)}") from None
            except requests.exceptions.ConnectionError as e:
                raise FetchError(f"cannot connect to {_host(current)}: {_short(e)}") from None
            except requests.exceptions.RequestException as e:
                raise FetchError(f"request to {current} failed: {_short(e)}") from None
            try:
                if resp.status_code in (301, 302, 303, 307, 308):
                    target = urljoin(current, resp.headers.get("Location", ""))
                    a, b = urlsplit(current), urlsplit(target)
                    if (a.scheme, a.netloc) != (b.scheme, b.netloc):
                        raise FetchError(f"{_host(current)} redirects to another host or scheme ({target[:80]}); refused")
                    current = target
                    resp.close()
                    continue
                if resp.status_code in (404, 410):
                    raise EvidenceMissing(f"no evidence at {current} (HTTP {resp.status_code})")
                if resp.status_code != 200:
                    raise FetchError(f"{current} answered HTTP {resp.status_code}")
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > s.max_bytes:
                    raise FetchError(f"{current} sends {length} bytes, more than max_bytes ({s.max_bytes})")
                body = self._read_body(resp, current, deadline)
            except BaseException:
                resp.close()  # drop the connection: it may hold an unread or hostile body
                raise
            resp.raw.release_conn()  # fully read: back to the pool for keep-alive
            return body
        raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times")

    def _read_body(self, resp, url: str, deadline: float) -> bytes:
        """Read the body one socket read at a time, so a trickling peer hits
        the deadline (a plain ``read(n)`` would wait for all n bytes)."""
        import requests
        import urllib3

        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"{url} sent a {encoding[:20]}-encoded body though none was asked for")
        chunks, size = [], 0
        try:
            while True:
                chunk = resp.raw.read1(65536, decode_content=False)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.settings.max_bytes:
                    raise FetchError(f"{url} sent more than max_bytes ({self.settings.max_bytes})")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url} too slow: deadline of {self.settings.deadline:g}s passed mid-body")
                chunks.append(chunk)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            raise FetchError(f"reading {url} failed: {_short(e)}") from None
        return b"".join(chunks)

def _ca_bundle() -> str | bool:
    """The system's trust store, as apt and dnf use it, unless the environment names one."""
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        if os.environ.get(var):
            return os.environ[var]
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if os.path.exists(path):
            return path
    return True  # certifi's bundle


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

    def _seg(self, value: str | None, what: str) -> str:
        value = _component(value, what)
        return value if self.is_file else quote(value, safe="+~")

    def urls(self, artifact: Artifact) -> list[str]:
        rb = self.rebuilder
        if rb.layout == "package-rebuilder":
            source = self._seg(artifact.source or artifact.name, "source name")
            version = self._seg(artifact.upstream_version, "version")
            return [f"{rb.url}/sources/{source}/{version}/metadata"]
        if rb.layout == "template":
            assert rb.url_template
            values = {
                "url": rb.url,
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
        return [Document(u, self.transport.get(u, deadline, self.rebuilder.url)) for u in self.urls(artifact)]

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
            if isinstance(build, int) and isinstance(art, int) and not isinstance(build, bool):
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

