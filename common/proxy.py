"""Which proxy an evidence request goes through: the package manager's choice, per URL.

Qubes templates (and many company networks) reach the network only through
an updates proxy.  Evidence must take the way the package manager's own
downloads take, or it fails exactly where rebuildgate is most wanted; and
where the package manager goes through a proxy, an evidence request must
not go around it.  So :class:`ProxyChoice` answers "which proxy for this
URL" with the package manager's own rules, applied to the *evidence* URL
(an https rebuilder behind a ``rebuildgate+http`` repository follows apt's
https settings).

apt's rules (apt 2.x: ``methods/http.cc`` ``HttpServerState::Open``, the
method's ``ConfigFind`` in ``methods/aptmethod.h``, and ``AutoDetectProxy``
in ``apt-pkg/contrib/proxy.cc``), in order:

1. ``Acquire::<scheme>::Proxy::<host>``; for https URLs the https key, then
   the http one (apt's https method looks under both names, https first).
   ``DIRECT`` means no proxy.
2. When there is no ``Acquire::<scheme>::Proxy::<host>`` for the URL's own
   scheme and ``Acquire::<scheme>::Proxy-Auto-Detect`` (or the older
   ``ProxyAutoDetect``) names a program, it is run with the URL as its only
   argument and the first line it prints is the per-host setting for that
   host (``DIRECT`` or a proxy URL); no output leaves the decision to the
   settings below.  Here it runs at most once per scheme and host, never
   through a shell, within :data:`DETECT_TIMEOUT`; a program that fails,
   hangs or prints something else fails that host's evidence with a
   :class:`FetchError` naming it — never a direct connection instead.
3. ``Acquire::<scheme>::Proxy`` (https, then http); ``DIRECT``: no proxy.
4. The environment, as urllib reads it: ``$https_proxy`` for https URLs
   (apt falls back to ``$http_proxy``), ``$http_proxy`` for http ones.
5. A host ``$no_proxy`` lists is reached directly, whatever 1-4 said (apt
   checks it last).

dnf has one proxy for everything (``proxy=``), else the environment; as
libcurl does for dnf's own downloads, a host ``$no_proxy`` lists is reached
directly all the same (:meth:`ProxyChoice.libcurl`; measured with dnf 4 and
librepo on Debian 12: repository metadata went around the proxy to such a
host).  The policy's ``[fetch] proxy`` wins over all of these, ``$no_proxy``
included (:class:`~rebuildgate.fetch.Transport`).
Nothing here does I/O except running the auto-detect program.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Union
from urllib.parse import urlsplit

from .errors import FetchError

#: Seconds the auto-detect program may take (the fetch deadline bounds it too).
DETECT_TIMEOUT = 5.0
#: apt reads the program's first line into a 512-byte buffer.
MAX_DETECT_LINE = 512
DIRECT = "DIRECT"

Find = Callable[[str, str], str]  # apt_pkg.Configuration.find: (name, default) -> value


@dataclass(frozen=True)
class ProxyChoice:
    """The proxy for each evidence URL (None: connect directly), memoised per scheme and host.

    Build one with :meth:`single` (one proxy for everything: dnf's
    ``proxy=``, the policy's ``[fetch] proxy``), :meth:`environment`
    ($http_proxy and friends only) or :meth:`apt` (apt's configuration,
    looked up with its ``find``).  Thread-safe.
    """

    fixed: str | None = None
    find: Find | None = None  # apt's configuration; None: not apt
    fixed_bypass: bool = False  # $no_proxy (in env) applies to the fixed proxy too, as libcurl applies it
    env: tuple[tuple[str, str], ...] = ()  # urllib.request.getproxies(), as pairs
    https_env_fallback: bool = False  # $http_proxy for https URLs when $https_proxy is unset (apt)
    _memo: dict[str, "str | None | FetchError"] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    _detected: dict[str, "str | None | FetchError"] = field(default_factory=dict, compare=False, repr=False)
    _detect_locks: dict[str, threading.Lock] = field(default_factory=dict, compare=False, repr=False)

    # -- constructors -----------------------------------------------------

    @classmethod
    def single(cls, proxy: str) -> "ProxyChoice":
        """*proxy* for every URL."""
        return cls(fixed=proxy)

    @classmethod
    def libcurl(cls, proxy: str) -> "ProxyChoice":
        """*proxy* for every URL but those of the hosts ``$no_proxy`` lists: dnf's ``proxy=``,
        which libcurl (``CURLOPT_PROXY`` without ``CURLOPT_NOPROXY``) bypasses for them."""
        return cls(fixed=proxy, env=_environment(), fixed_bypass=True)

    @classmethod
    def environment(cls) -> "ProxyChoice":
        """$http_proxy, $https_proxy and $no_proxy, as urllib reads them."""
        return cls(env=_environment())

    @classmethod
    def apt(cls, find: Find) -> "ProxyChoice":
        """apt's ``Acquire::http(s)::Proxy*`` settings (looked up with *find*), then the environment."""
        return cls(find=find, env=_environment(), https_env_fallback=True)

    @classmethod
    def of(cls, proxy: "ProxyChoice | str | None") -> "ProxyChoice":
        """A choice from what callers pass: a choice, one proxy URL, or None (the environment)."""
        if isinstance(proxy, ProxyChoice):
            return proxy
        return cls.single(proxy) if proxy else cls.environment()

    # -- lookups ----------------------------------------------------------

    @property
    def direct_always(self) -> bool:
        """True when no URL can go through a proxy (nothing configured at all)."""
        return not self.fixed and self.find is None and not any(k in ("http", "https") for k, _ in self.env)

    def may_block(self, url: str) -> bool:
        """True when :meth:`for_url` may run the auto-detect program for *url* (not answered yet)."""
        if self.fixed or self.find is None:
            return False
        key = _key(url)
        with self._lock:
            if key in self._memo:
                return False
        return bool(self._detect_command(urlsplit(url).scheme))

    def for_url(self, url: str, timeout: float = DETECT_TIMEOUT) -> str | None:
        """The proxy URL for *url*, or None to connect directly.

        Raises :class:`FetchError` when the auto-detect program failed for
        its host (remembered: the program runs once per scheme and host).
        *timeout* bounds that program.
        """
        if self.fixed:
            if self.fixed_bypass and self._bypassed(urlsplit(url).netloc.rsplit("@", 1)[-1]):
                return None
            return self.fixed
        key = _key(url)
        with self._lock:
            if key in self._memo:
                return _answer(self._memo[key])
        # Two threads may both get here for a new host: choosing is pure, apart
        # from the auto-detect program, which _detect_once runs once per host.
        try:
            result: str | None | FetchError = self._choose(url, timeout)
        except FetchError as e:
            result = e
        with self._lock:
            self._memo[key] = result
        return _answer(result)

    def auto_detected(self, url: str, timeout: float = DETECT_TIMEOUT) -> str | None:
        """What apt's ``Proxy-Auto-Detect`` program says for *url*: ``DIRECT``, a
        proxy URL, or None (no program for its scheme, a per-host setting
        already made, or no opinion).

        apt runs the program in its own process and hands the answer to its
        http method as the ``Proxy`` field of each download; for a
        ``rebuildgate+http`` entry it looks under ``Acquire::rebuildgate+http``
        and runs nothing, so the APT method asks here on behalf of the http
        method it wraps.  Memoised per scheme and host; raises
        :class:`FetchError` when the program fails (as apt fails the download).
        """
        if self.fixed or self.find is None:
            return None
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        if not self._detect_command(scheme) or self._find(f"Acquire::{scheme}::Proxy::{host}"):
            return None
        return self._detect_once(scheme, url, timeout)

    def _choose(self, url: str, timeout: float) -> str | None:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        names = ("https", "http") if scheme == "https" else (scheme,)
        chosen = ""
        if self.find is not None:
            # apt's worker runs the auto-detect program unless this very key is set,
            # and stores its answer there, ahead of the other scheme's per-host key.
            chosen = self._find(f"Acquire::{scheme}::Proxy::{host}") or self._detect_once(scheme, url, timeout) or ""
            chosen = chosen or self._first(f"Proxy::{host}", names)
            chosen = chosen or self._first("Proxy", names)
        if not chosen:
            env = dict(self.env)
            chosen = env.get(scheme, "")
            if not chosen and scheme == "https" and self.https_env_fallback:
                chosen = env.get("http", "")
        if not chosen or chosen.strip().upper() == DIRECT:
            return None
        if self._bypassed(parts.netloc.rsplit("@", 1)[-1]):
            return None
        return chosen.strip()

    def _find(self, name: str) -> str:
        assert self.find is not None
        return (self.find(name, "") or "").strip()

    def _first(self, postfix: str, names: tuple[str, ...]) -> str:
        for name in names:
            value = self._find(f"Acquire::{name}::{postfix}")
            if value:
                return value
        return ""

    def _detect_command(self, scheme: str) -> str:
        if self.find is None:
            return ""
        return self._find(f"Acquire::{scheme}::Proxy-Auto-Detect") or self._find(f"Acquire::{scheme}::ProxyAutoDetect")

    def _detect_once(self, scheme: str, url: str, timeout: float) -> str | None:
        """:meth:`_detect`, run at most once per scheme and host (the evidence
        and the downloads of one host share the answer)."""
        key = _key(url)
        with self._lock:
            lock = self._detect_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                known = key in self._detected
            if not known:
                try:
                    result: str | None | FetchError = self._detect(scheme, url, timeout)
                except FetchError as e:
                    result = e
                with self._lock:
                    self._detected[key] = result
        with self._lock:
            return _answer(self._detected[key])

    def _detect(self, scheme: str, url: str, timeout: float) -> str | None:
        """Run apt's auto-detect program for *url*: DIRECT, a proxy URL, or None (no opinion)."""
        command = self._detect_command(scheme)
        if not command:
            return None
        try:
            line = run_detect(command, url, timeout)
        except _DetectFailed as e:
            raise FetchError(f"proxy auto-detect {command} failed for {_site(url)}: {e}") from None
        if line is None or not line.strip():
            return None  # apt: "no idea", the generic settings apply
        text = line.strip()
        if text == DIRECT:
            return DIRECT
        p = urlsplit(text)
        if p.scheme in ("http", "https") and p.hostname and not any(c.isspace() for c in text):
            return text
        raise FetchError(f"proxy auto-detect {command} failed for {_site(url)}: it printed "
                         f"{text[:60]!r}, neither DIRECT nor an http(s):// proxy URL")

    def _bypassed(self, hostport: str) -> bool:
        env = dict(self.env)
        if not env.get("no"):
            return False
        import urllib.request

        return bool(urllib.request.proxy_bypass_environment(hostport, env))


class _DetectFailed(Exception):
    pass


def run_detect(command: str, url: str, timeout: float) -> str | None:
    """Run *command* *url* (no shell) and return the first line it printed, or None if it printed nothing.

    Fails (:class:`_DetectFailed`) if it cannot start, exits non-zero (as
    apt does), or is not done within *timeout* seconds; its process group is
    killed then.
    """
    import selectors
    import signal
    import subprocess  # only when apt names a program: ~2 ms of every run's start-up otherwise

    deadline = time.monotonic() + max(timeout, 0.0)
    try:
        proc = subprocess.Popen([command, url], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    except (OSError, ValueError) as e:
        raise _DetectFailed(getattr(e, "strerror", None) or str(e)) from None
    assert proc.stdout is not None
    try:
        data = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while b"\n" not in data and len(data) <= MAX_DETECT_LINE:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _DetectFailed(f"no answer within {timeout:g}s")
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
        line, newline, _ = data.partition(b"\n")
        if len(line) > MAX_DETECT_LINE:
            raise _DetectFailed(f"its first line is longer than {MAX_DETECT_LINE} bytes")
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            raise _DetectFailed(f"it did not exit within {timeout:g}s") from None
        if code != 0:
            raise _DetectFailed(f"exit status {code}" if code > 0 else f"killed by signal {-code}")
        if not data:
            return None
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise _DetectFailed("it printed bytes that are not ASCII") from None
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        proc.stdout.close()


def _environment() -> tuple[tuple[str, str], ...]:
    """$http_proxy and friends, read as urllib reads them.  urllib.request
    (with http.client and the email package) is imported only when one is
    set: ~8 ms of every apt run's start-up otherwise."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return ()
    import urllib.request

    return tuple(sorted(urllib.request.getproxies_environment().items()))


def _key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.rsplit('@', 1)[-1].lower()}"


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


def _answer(result: "str | None | FetchError") -> str | None:
    if isinstance(result, FetchError):
        raise FetchError(str(result))
    return result


ProxyArg = Union[ProxyChoice, str, None]
