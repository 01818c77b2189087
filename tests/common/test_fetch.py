"""The fetcher against a hostile rebuilder: each fault costs only time-bounded errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rebuildgate.errors import EvidenceMissing, FetchError, RebuilderOverBudget
from rebuildgate.fetch import EvidenceSource, Transport, make_transport
from rebuildgate.model import Artifact
from rebuildgate.policy import FetchSettings, Rebuilder

from tests.support.fakehttp import FakeHttp
from tests.support.server import Fault
from tests.support.waiting import wait_until

SETTINGS = FetchSettings(connect_timeout=1.0, read_timeout=1.0, deadline=2.0, max_bytes=64 * 1024,
                         cache_dir=None)


@pytest.fixture
def served(rebuilder_server, tmp_path):
    server = rebuilder_server()
    (server.root / "doc").write_bytes(b"evidence")
    return server


def get(url: str, settings: FetchSettings = SETTINGS, proxy: str | None = None) -> bytes:
    t = Transport(settings, proxy)
    try:
        return t.get(url, time.monotonic() + settings.deadline)
    finally:
        t.close()


def test_plain_get(served) -> None:
    assert get(f"{served.url}/doc") == b"evidence"


def test_404_is_missing_and_500_is_an_error(served) -> None:
    with pytest.raises(EvidenceMissing):
        get(f"{served.url}/nothing")
    served.fault = Fault.status(500)
    with pytest.raises(FetchError) as e:
        get(f"{served.url}/doc")
    assert not isinstance(e.value, EvidenceMissing) and "HTTP 500" in str(e.value)


@pytest.mark.parametrize("fault,words", [
    (Fault.hang(), "did not answer"),
    (Fault.delay(5), "did not answer"),
    (Fault.trickle(4, total=1000), "deadline"),
    (Fault.endless(), "max_bytes"),
    (Fault.oversized(10 * 1024 * 1024), "max_bytes"),
])
def test_slow_or_huge_answers_are_cut_within_the_deadline(served, fault, words) -> None:
    served.fault = fault
    start = time.monotonic()
    with pytest.raises(FetchError) as e:
        get(f"{served.url}/doc")
    assert words in str(e.value)
    assert time.monotonic() - start < SETTINGS.deadline + SETTINGS.read_timeout + 0.5


def test_endless_slow_body_is_cut_by_the_deadline(served) -> None:
    served.fault = Fault.endless(pause=0.3)
    start = time.monotonic()
    with pytest.raises(FetchError):
        get(f"{served.url}/doc", FetchSettings(connect_timeout=1, read_timeout=1, deadline=1.5,
                                               max_bytes=100 * 1024 * 1024, cache_dir=None))
    assert time.monotonic() - start < 3.0


def test_unreachable_rebuilder() -> None:
    with pytest.raises(FetchError) as e:
        get("http://127.0.0.1:9/doc")
    assert "cannot connect" in str(e.value)


def test_redirect_within_host_is_followed(served) -> None:
    served.faults["/old"] = Fault.redirect("/doc")
    assert get(f"{served.url}/old") == b"evidence"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://127.0.0.2:1/doc", "https://127.0.0.1/doc"])
def test_redirect_to_another_scheme_or_host_is_refused(served, location) -> None:
    served.faults["/old"] = Fault.redirect(location)
    with pytest.raises(FetchError) as e:
        get(f"{served.url}/old")
    assert "another host or scheme" in str(e.value)


def test_redirect_loop_is_bounded(served) -> None:
    served.faults["/loop"] = Fault.redirect("/loop")
    with pytest.raises(FetchError) as e:
        get(f"{served.url}/loop")
    assert "redirects more than" in str(e.value)


def test_proxy_is_used(rebuilder_server, served) -> None:
    proxy = rebuilder_server()  # answers absolute-form requests as a proxy would
    (proxy.root / "doc").write_bytes(b"via proxy")
    assert get("http://rebuilder.invalid/doc", proxy=proxy.url) == b"via proxy"
    assert proxy.requests == ["http://rebuilder.invalid/doc"]
    # The policy's own proxy wins over the package manager's.
    s = FetchSettings(connect_timeout=1, read_timeout=1, deadline=2, cache_dir=None, proxy=proxy.url)
    assert get("http://rebuilder.invalid/doc", s, proxy="http://127.0.0.1:9") == b"via proxy"


def test_concurrent_requests_for_one_url_share_one_fetch(served) -> None:
    from concurrent.futures import ThreadPoolExecutor
    served.latency = 0.2
    t = Transport(SETTINGS)
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: t.get(f"{served.url}/doc", time.monotonic() + 2), range(8)))
    assert bodies == [b"evidence"] * 8 and served.requests.count("/doc") == 1


def test_a_host_slower_than_half_the_deadline_three_times_is_not_asked_again(served) -> None:
    """Answers that take most of the deadline never trip the timeout rule,
    but they cost a deadline per package: three of them use up the host's
    time budget (the third is abandoned the moment it counts)."""
    settings = FetchSettings(connect_timeout=1.0, read_timeout=2.0, deadline=1.0, cache_dir=None)
    served.latency = 0.7
    for i in range(5):
        (served.root / f"d{i}").write_bytes(b"evidence")
    t = Transport(settings)
    try:
        for i in range(2):
            assert t.get(f"{served.url}/d{i}", time.monotonic() + settings.deadline) == b"evidence"
        for i in range(2, 5):
            with pytest.raises(RebuilderOverBudget) as e:
                t.get(f"{served.url}/d{i}", time.monotonic() + settings.deadline)
            assert e.value.kind == "slow"
            assert "answered 3 requests slower than half the deadline (0.5 s); not asked again" in str(e.value)
    finally:
        t.close()
    assert served.requests == ["/d0", "/d1", "/d2"]


def test_requests_in_flight_are_abandoned_when_their_host_is_tripped(served) -> None:
    """Three requests hang: when they pass half the deadline the host is
    tripped, and all three end then with the reason (not at the deadline,
    as timeouts)."""
    from concurrent.futures import ThreadPoolExecutor

    settings = FetchSettings(connect_timeout=1.0, read_timeout=5.0, deadline=4.0, cache_dir=None)
    served.fault = Fault.hang()
    t = Transport(settings)

    def kind(i: int) -> str:
        try:
            t.get(f"{served.url}/d{i}", time.monotonic() + settings.deadline)
        except FetchError as e:
            return e.kind
        return "answered"

    try:
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(kind, range(3))) == ["slow"] * 3
    finally:
        t.close()


def test_file_source_stays_inside_its_directory(tmp_path) -> None:
    base = tmp_path / "evidence"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "doc").write_bytes(b"local")
    (tmp_path / "secret").write_bytes(b"outside")
    (base / "sub" / "escape").symlink_to(tmp_path / "secret")
    t = Transport(SETTINGS)
    root = f"file://{base}"
    assert t.get(f"file://{base}/sub/doc", time.monotonic() + 1, root) == b"local"
    with pytest.raises(FetchError) as e:
        t.get(f"file://{base}/sub/escape", time.monotonic() + 1, root)
    assert "outside the evidence directory" in str(e.value)
    with pytest.raises(FetchError):
        t.get(f"file://{base}/../secret", time.monotonic() + 1, root)
    with pytest.raises(EvidenceMissing):
        t.get(f"file://{base}/nope", time.monotonic() + 1, root)
    big = base / "big"
    big.write_bytes(b"x" * (SETTINGS.max_bytes + 1))
    with pytest.raises(FetchError) as e:
        t.get(f"file://{big}", time.monotonic() + 1, root)
    assert "max_bytes" in str(e.value)


def source(layout: str, url: str = "http://rb.example/base", template: str | None = None) -> EvidenceSource:
    return EvidenceSource(Rebuilder("rb", url, layout, template, keys=(Path("/k"),)), Transport(SETTINGS))


def test_rebuilderd_lookup_then_attestations(rebuilder_server) -> None:
    server = rebuilder_server()
    server.faults["/api/v1/packages/binary"] = Fault.body(
        b'{"total": 2, "records": [{"name": "foo", "build_id": 7, "artifact_id": 9},'
        b' {"name": "other", "build_id": 1, "artifact_id": 1}, {"name": "foo", "build_id": null}]}')
    path = server.root / "api/v1/builds/7/artifacts/9"
    path.mkdir(parents=True)
    (path / "attestation").write_bytes(b"the link")
    art = Artifact("foo_1:2.0_amd64.deb", "a" * 64, name="foo", version="1:2.0", arch="amd64")
    docs = source("rebuilderd", server.url).documents(art, time.monotonic() + 2)
    assert [d.body for d in docs] == [b"the link"]
    assert server.requests[0] == "/api/v1/packages/binary?name=foo&version=1%3A2.0&architecture=amd64"


@pytest.mark.parametrize("body", [b"[]", b'{"records": []}', b'{"records": [{"name": "foo"}]}'])
def test_rebuilderd_without_records_is_missing(rebuilder_server, body) -> None:
    server = rebuilder_server()
    server.faults["/api/v1/packages/binary"] = Fault.body(body)
    art = Artifact("foo.deb", "a" * 64, name="foo", version="1", arch="all")
    with pytest.raises(EvidenceMissing):
        source("rebuilderd", server.url).documents(art, time.monotonic() + 2)


@pytest.mark.parametrize("body", [b"<html>", b'{"records": 5}', b'"x"', b"[" * 50000])
def test_rebuilderd_garbage_is_a_fetch_error(rebuilder_server, body) -> None:
    server = rebuilder_server()
    server.faults["/api/v1/packages/binary"] = Fault.body(body)
    art = Artifact("foo.deb", "a" * 64, name="foo", version="1", arch="all")
    with pytest.raises(FetchError):
        source("rebuilderd", server.url).documents(art, time.monotonic() + 2)


def test_cache_serves_fresh_bodies_and_never_bad_ones(tmp_path, served) -> None:
    from rebuildgate.cache import DocumentCache
    cache = DocumentCache(tmp_path / "cache", ttl=60, max_bytes=1024)
    t = Transport(SETTINGS, cache=cache)
    url = f"{served.url}/doc"
    assert t.get(url, time.monotonic() + 2) == b"evidence"
    assert wait_until(lambda: cache.get(url) is not None)  # written in the background
    t2 = Transport(SETTINGS, cache=cache)  # a new process: memo empty, cache warm
    served.fault = Fault.status(500)
    assert t2.get(url, time.monotonic() + 2) == b"evidence"
    assert cache.get(url, now=time.time() + 3600) is None  # expired
    assert cache.get("http://other/doc") is None
    # A cache file renamed to another URL's slot is not served for it.
    other = "http://x/other"
    cache._path(url).rename(cache._path(other))
    assert cache.get(other) is None


def test_cache_in_unwritable_place_is_just_no_cache(tmp_path, served) -> None:
    from rebuildgate.cache import DocumentCache
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    t = Transport(SETTINGS, cache=DocumentCache(blocker / "cache", ttl=60, max_bytes=1024))
    assert t.get(f"{served.url}/doc", time.monotonic() + 2) == b"evidence"


def test_environment_proxy_and_no_proxy(rebuilder_server, served, monkeypatch) -> None:
    proxy = rebuilder_server()
    (proxy.root / "doc").write_bytes(b"via proxy")
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "direct.invalid")
    assert get("http://rebuilder.invalid/doc") == b"via proxy"
    with pytest.raises(FetchError):  # bypassed: goes direct, and that host does not exist
        get("http://direct.invalid/doc")
    assert proxy.requests == ["http://rebuilder.invalid/doc"]


def test_connections_are_kept_alive(served) -> None:
    t = Transport(SETTINGS)
    for i in range(5):
        (served.root / f"d{i}").write_bytes(b"x")
        t.get(f"{served.url}/d{i}", time.monotonic() + 2)
    assert (t.http.connections_opened, t.http.requests_sent) == (1, 5)
    assert served.requests == [f"/d{i}" for i in range(5)]
    t.close()


def test_https_rebuilder_is_verified_against_the_trust_store(tmp_path, monkeypatch) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.support.tls import make_tls_files

    tls = make_tls_files(tmp_path)
    ca = tls.ca

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = tls.server_context().wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/doc"
    try:
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        assert get(url) == b"secure"
        monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")  # does not know our CA
        with pytest.raises(FetchError) as e:
            get(url)
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or "certificate" in str(e.value).lower()
    finally:
        httpd.shutdown()


def test_flush_cache_waits_for_the_writes_a_short_lived_process_would_lose(served, tmp_path) -> None:
    """apt's pre-prompt hook exits right after its verdicts; the method then reads what it wrote."""
    settings = FetchSettings(connect_timeout=1.0, read_timeout=1.0, deadline=2.0, cache_dir=tmp_path / "cache",
                             cache_ttl=600)
    t = make_transport(settings)
    try:
        assert t.get(f"{served.url}/doc", time.monotonic() + 2) == b"evidence"
        assert t.flush_cache(5.0)
    finally:
        t.close()
    again = make_transport(settings)
    try:
        assert again.get(f"{served.url}/doc", time.monotonic() + 2) == b"evidence"
        assert again.came_from_cache(f"{served.url}/doc")
        assert served.requests == ["/doc"]
    finally:
        again.close()


def _warm(tmp_path: Path, served, names: list[str]):
    from rebuildgate.cache import DocumentCache
    cache = DocumentCache(tmp_path / "cache", ttl=60, max_bytes=1024)
    for name in names:
        (served.root / name).write_bytes(b"served " + name.encode())
        cache.put(f"{served.url}/{name}", b"cached " + name.encode())
    return cache


def test_cache_reads_asked_together_are_one_blocking_call_off_the_loop(tmp_path, served, monkeypatch) -> None:
    """The reads the jobs ask for in one turn of the loop go to one worker in
    one call (not one hand-off each), never on the loop thread."""
    import asyncio
    import threading

    names = [f"doc{i}" for i in range(6)]
    cache = _warm(tmp_path, served, names)
    calls: list[tuple[str, list[str]]] = []
    real = cache.get_many
    monkeypatch.setattr(cache, "get_many", lambda urls: calls.append((threading.current_thread().name, urls))
                        or real(urls))
    t = Transport(SETTINGS, cache=cache)
    try:
        urls = [f"{served.url}/{name}" for name in names]

        async def all_of_them() -> tuple[list[bytes], str]:
            deadline = time.monotonic() + 2
            bodies = await asyncio.gather(*(t.fetch(url, deadline) for url in urls))
            return list(bodies), threading.current_thread().name

        bodies, loop_thread = t.wait(all_of_them(), time.monotonic() + 2)
        assert bodies == [b"cached " + name.encode() for name in names]
        assert all(t.came_from_cache(url) for url in urls)
        assert served.requests == []
        assert [asked for _thread, asked in calls] == [urls]
        assert calls[0][0].startswith("rbg-blocking") and calls[0][0] != loop_thread
    finally:
        t.close()


def test_a_hanging_cache_read_costs_a_quarter_of_the_time_left_then_the_cache_is_off(
        tmp_path, served, monkeypatch, caplog) -> None:
    """A batch read stuck in the disk (a network file system) is a miss for
    every job waiting on it after a quarter of its time left, the rebuilder
    answers instead, and the cache is not read again in this run."""
    import threading

    cache = _warm(tmp_path, served, ["a", "b"])
    stuck = threading.Event()
    calls: list[list[str]] = []
    monkeypatch.setattr(cache, "get_many", lambda urls: calls.append(urls) or stuck.wait(30) or [None] * len(urls))
    t = Transport(SETTINGS, cache=cache)
    try:
        started = time.monotonic()
        assert t.get(f"{served.url}/a", started + 2.0) == b"served a"
        took = time.monotonic() - started
        assert 0.4 <= took < 1.5, took  # a quarter of the 2 s left, then the request
        assert not t.came_from_cache(f"{served.url}/a")
        assert "not used for the rest of this run" in caplog.text
        started = time.monotonic()
        assert t.get(f"{served.url}/b", started + 2.0) == b"served b"
        assert time.monotonic() - started < 0.4  # not waiting on the cache again
        assert calls == [[f"{served.url}/a"]]
        assert served.requests == ["/a", "/b"]
    finally:
        stuck.set()
        t.close()


def test_answers_from_worker_threads_that_come_together_wake_the_loop_once() -> None:
    """Transport.on_loop: each worker answer reaches its awaiting coroutine
    (result, exception or cancellation), and the answers posted while the
    loop was busy share one wake-up instead of a self-pipe write each."""
    import asyncio
    import threading
    from concurrent.futures import Future

    from rebuildgate.pool import DaemonPool

    t = Transport(SETTINGS)
    pool = DaemonPool(1, "test-inbox")
    try:
        async def scenario() -> tuple[list, int, bool, bool]:
            loop = asyncio.get_running_loop()
            wakeups = 0
            real = loop.call_soon_threadsafe

            def counted(*args, **kwargs):
                nonlocal wakeups
                wakeups += 1
                return real(*args, **kwargs)

            loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
            works: list[Future] = [Future() for _ in range(50)]
            waiting = [t.on_loop(w) for w in works]
            answerer = threading.Thread(target=lambda: [w.set_exception(ValueError(i)) if i == 7 else w.set_result(i)
                                                        for i, w in enumerate(works)])
            answerer.start()
            answerer.join()  # the loop is held here: every answer arrives while it is busy
            got = await asyncio.gather(*waiting, return_exceptions=True)
            loop.call_soon_threadsafe = real  # type: ignore[method-assign]
            # A queued work whose awaiting future is cancelled never runs.
            gate, ran = threading.Event(), threading.Event()
            blocker = pool.submit(gate.wait, 5)
            queued = pool.submit(ran.set)
            waiter = t.on_loop(queued)
            waiter.cancel()
            await asyncio.sleep(0)  # the cancellation reaches the work on the loop's next turn
            gate.set()
            await t.on_loop(blocker)
            return got, wakeups, queued.cancelled(), ran.is_set()

        got, wakeups, cancelled, ran = t.wait(scenario(), time.monotonic() + 5)
        assert [g for i, g in enumerate(got) if i != 7] == [i for i in range(50) if i != 7]
        assert isinstance(got[7], ValueError) and got[7].args == (7,)
        assert wakeups == 1  # 50 answers, one wake-up
        assert cancelled and not ran
    finally:
        pool.shutdown()
        t.close()


# -- the fetcher around an in-memory network (tests/support/fakehttp.py) ------------------------

def _fake_transport(fake, deadline: float = 2.0) -> Transport:
    return Transport(FetchSettings(connect_timeout=1.0, read_timeout=1.0, deadline=deadline, cache_dir=None),
                     http=fake)


def test_one_request_per_url_per_run_whoever_asks_and_missing_is_remembered() -> None:
    fake = FakeHttp({"http://rb.example/a": b"A"}, delays={"rb.example": 0.05})
    t = _fake_transport(fake)
    try:
        async def many() -> list:
            end = time.monotonic() + 2
            return await asyncio.gather(*(t.fetch(u, end) for u in ["http://rb.example/a"] * 5 + [
                "http://rb.example/gone"] * 3), return_exceptions=True)

        answers = t.run(many()).result(10)
        assert answers[:5] == [b"A"] * 5
        assert all(isinstance(a, EvidenceMissing) for a in answers[5:])
        assert sorted(fake.requests) == ["http://rb.example/a", "http://rb.example/gone"]
        with pytest.raises(EvidenceMissing):
            t.get("http://rb.example/gone", time.monotonic() + 2)  # remembered: not asked again
        assert len(fake.requests) == 2
    finally:
        t.close()
    assert wait_until(lambda: fake.closed, 5)  # closed on the loop as it stops


def test_a_host_slower_than_half_the_deadline_is_not_asked_again_without_a_socket() -> None:
    urls = [f"http://slow.example/{i}" for i in range(5)]
    fake = FakeHttp({u: b"late" for u in urls}, delays={"slow.example": 0.8})  # deadline 1.0: over half
    t = _fake_transport(fake, deadline=1.0)
    try:
        async def all_of_them() -> list:
            end = time.monotonic() + 1.0
            return await asyncio.gather(*(t.fetch(u, end) for u in urls[:3]), return_exceptions=True)

        first = t.run(all_of_them()).result(10)
        assert all(isinstance(a, FetchError) for a in first), first  # abandoned at the trip
        with pytest.raises(FetchError, match="not asked again"):
            t.get(urls[4], time.monotonic() + 1.0)
        assert fake.requests == urls[:3]  # the fourth was refused without a request
    finally:
        t.close()
