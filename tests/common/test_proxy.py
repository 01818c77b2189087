"""Which proxy an evidence URL goes through (rebuildgate.proxy), rule by rule.

apt's settings are real python-apt configuration trees; the auto-detect
programs are real scripts; the last tests fetch through a real forward proxy
(tests/support/proxy.py), over plain HTTP and over TLS inside CONNECT.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rebuildgate.errors import FetchError
from rebuildgate.fetch import Transport
from rebuildgate.policy import FetchSettings
from rebuildgate.proxy import ProxyChoice
from tests.support.proxy import ForwardProxy

P1, P2, P3, P4 = (f"http://proxy{i}.example:3128" for i in range(1, 5))


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def apt(**items: str) -> ProxyChoice:
    """apt's choice over a configuration tree holding *items* (``__`` stands for ``::``)."""
    import apt_pkg

    config = apt_pkg.Configuration()
    for name, value in items.items():
        config.set(name.replace("__", "::"), value)
    return ProxyChoice.apt(config.find)


def apt_tree(items: dict[str, str]) -> ProxyChoice:
    import apt_pkg

    config = apt_pkg.Configuration()
    for name, value in items.items():
        config.set(name, value)
    return ProxyChoice.apt(config.find)


def script(tmp_path: Path, body: str, name: str = "detect") -> Path:
    """An auto-detect program; it logs each argument it is given to <name>.log."""
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\necho "$1" >> "{tmp_path}/{name}.log"\n{body}\n')
    path.chmod(0o755)
    return path


def runs(program: Path) -> list[str]:
    log = program.parent / f"{program.name}.log"
    return log.read_text().splitlines() if log.exists() else []


# -- apt's settings ----------------------------------------------------------------


def test_per_host_setting_wins_over_the_scheme_wide_one() -> None:
    choice = apt_tree({"Acquire::http::Proxy": P1, "Acquire::http::Proxy::rb.example": P2})
    assert choice.for_url("http://rb.example/sources/x") == P2
    assert choice.for_url("http://other.example/x") == P1


def test_direct_per_host_means_no_proxy_even_with_a_scheme_wide_one() -> None:
    choice = apt_tree({"Acquire::http::Proxy": P1, "Acquire::http::Proxy::repo.example": "DIRECT"})
    assert choice.for_url("http://repo.example/x") is None
    assert choice.for_url("http://rb.example/x") == P1


def test_direct_scheme_wide_means_no_proxy_not_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", P3)
    choice = apt_tree({"Acquire::http::Proxy": "DIRECT"})
    assert choice.for_url("http://rb.example/x") is None


def test_https_urls_look_under_https_then_http() -> None:
    """apt's https method: ConfigFind looks for Acquire::https::X, then Acquire::http::X,
    per-host first, then scheme-wide."""
    full = {"Acquire::https::Proxy::rb.example": P1, "Acquire::http::Proxy::rb.example": P2,
            "Acquire::https::Proxy": P3, "Acquire::http::Proxy": P4}
    url = "https://rb.example/x"
    assert apt_tree(full).for_url(url) == P1
    del full["Acquire::https::Proxy::rb.example"]
    assert apt_tree(full).for_url(url) == P2
    del full["Acquire::http::Proxy::rb.example"]
    assert apt_tree(full).for_url(url) == P3
    del full["Acquire::https::Proxy"]
    assert apt_tree(full).for_url(url) == P4


def test_http_urls_never_read_the_https_settings() -> None:
    choice = apt_tree({"Acquire::https::Proxy": P1, "Acquire::https::Proxy::rb.example": P2})
    assert choice.for_url("http://rb.example/x") is None


def test_the_evidence_urls_scheme_decides_not_the_methods() -> None:
    """The method is rebuildgate+http, the rebuilder https: apt's https settings apply."""
    from rebuildgate.apt.aptconfig import AptConfig

    config = AptConfig()
    config.add("Acquire::http::Proxy", P1)
    config.add("Acquire::https::Proxy", P2)
    settings = config.settings("http")
    assert settings.proxy is not None
    assert settings.proxy.for_url("https://rb.example/x") == P2
    assert settings.proxy.for_url("http://rb.example/x") == P1


def test_host_names_are_matched_case_insensitively_as_apt_does() -> None:
    choice = apt_tree({"Acquire::http::Proxy::RB.Example": P2})
    assert choice.for_url("http://rb.EXAMPLE/x") == P2


# -- the environment ---------------------------------------------------------------


def test_environment_when_apt_sets_nothing(monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", P1)
    monkeypatch.setenv("https_proxy", P2)
    assert apt().for_url("http://rb.example/x") == P1
    assert apt().for_url("https://rb.example/x") == P2
    assert ProxyChoice.environment().for_url("https://rb.example/x") == P2


def test_apt_reads_http_proxy_for_https_when_https_proxy_is_unset(monkeypatch) -> None:
    """apt's http method falls back to $http_proxy for TLS; urllib (and dnf's libcurl) do not."""
    monkeypatch.setenv("http_proxy", P1)
    assert apt().for_url("https://rb.example/x") == P1
    assert ProxyChoice.environment().for_url("https://rb.example/x") is None


def test_no_proxy_is_reached_directly_whatever_else_says(monkeypatch) -> None:
    monkeypatch.setenv("http_proxy", P1)
    monkeypatch.setenv("no_proxy", "direct.example,.internal")
    env = ProxyChoice.environment()
    assert env.for_url("http://direct.example/x") is None
    assert env.for_url("http://rb.internal/x") is None
    assert env.for_url("http://rb.example/x") == P1
    # apt applies $no_proxy after its own settings too (HttpServerState::Open).
    choice = apt_tree({"Acquire::http::Proxy": P2, "Acquire::http::Proxy::direct.example": P3})
    assert choice.for_url("http://direct.example/x") is None
    assert choice.for_url("http://rb.example/x") == P2


def test_a_single_proxy_is_used_for_everything(monkeypatch) -> None:
    monkeypatch.setenv("no_proxy", "rb.example")
    assert ProxyChoice.single(P1).for_url("https://rb.example/x") == P1
    assert ProxyChoice.of(P1) == ProxyChoice.single(P1)
    assert ProxyChoice.of(None).for_url("http://rb.example/x") is None


def test_dnfs_proxy_spares_the_hosts_no_proxy_lists_as_libcurl_does(monkeypatch) -> None:
    monkeypatch.setenv("no_proxy", "rb.internal,.corp.example")
    choice = ProxyChoice.libcurl(P1)
    assert choice.for_url("https://rb.internal/x") is None
    assert choice.for_url("http://rb.internal:8080/x") is None
    assert choice.for_url("https://a.corp.example/x") is None
    assert choice.for_url("https://user@rb.internal/x") is None
    assert choice.for_url("https://rb.example/x") == P1
    monkeypatch.delenv("no_proxy")
    assert ProxyChoice.libcurl(P1).for_url("https://rb.internal/x") == P1


def test_the_policys_proxy_wins_over_the_package_managers() -> None:
    choice = apt_tree({"Acquire::http::Proxy::rb.example": "DIRECT", "Acquire::http::Proxy": P1})
    t = Transport(FetchSettings(cache_dir=None, proxy=P4), choice)
    try:
        assert t.proxy_for("http://rb.example/x") == P4
    finally:
        t.close()
    t = Transport(FetchSettings(cache_dir=None), choice)
    try:
        assert t.proxy_for("http://rb.example/x") is None
        assert t.proxy_for("http://other.example/x") == P1
    finally:
        t.close()


# -- Proxy-Auto-Detect -------------------------------------------------------------


def test_auto_detect_names_the_proxy_and_runs_once_per_host(tmp_path) -> None:
    program = script(tmp_path, f"echo {P2}")
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program), "Acquire::http::Proxy": P1})
    assert choice.for_url("http://rb.example/sources/a/metadata") == P2
    assert choice.for_url("http://rb.example/sources/b/metadata") == P2
    assert choice.for_url("http://rb2.example/x") == P2
    # apt passes the URL as the only argument; memoised per scheme and host.
    assert runs(program) == ["http://rb.example/sources/a/metadata", "http://rb2.example/x"]


def test_the_downloads_proxy_is_what_auto_detect_says_and_shares_its_run(tmp_path) -> None:
    """auto_detected() is the ``Proxy`` field apt gives its http method: the
    program's answer (DIRECT included), None without a program or when the
    host has its own setting (the http method reads that itself)."""
    program = script(tmp_path, 'case "$1" in http://direct.example/*) echo DIRECT ;; *) echo ' + P2 + ' ;; esac')
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program), "Acquire::http::Proxy::own.example": P3})
    assert choice.auto_detected("http://repo.example/pool/a.deb") == P2
    assert choice.for_url("http://repo.example/sources/a/metadata") == P2  # evidence from the same host
    assert choice.auto_detected("http://direct.example/pool/b.deb") == "DIRECT"
    assert choice.auto_detected("http://own.example/pool/c.deb") is None
    assert runs(program) == ["http://repo.example/pool/a.deb", "http://direct.example/pool/b.deb"]
    assert apt_tree({"Acquire::http::Proxy": P1}).auto_detected("http://repo.example/a.deb") is None
    failing = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(script(tmp_path, "exit 4", "failing"))})
    with pytest.raises(FetchError, match="exit status 4"):
        failing.auto_detected("http://repo.example/a.deb")


def test_auto_detect_direct(tmp_path) -> None:
    program = script(tmp_path, "echo DIRECT")
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program), "Acquire::http::Proxy": P1})
    assert choice.for_url("http://rb.example/x") is None


def test_the_older_key_without_the_dash(tmp_path) -> None:
    program = script(tmp_path, f"echo {P2}")
    assert apt_tree({"Acquire::http::ProxyAutoDetect": str(program)}).for_url("http://rb.example/x") == P2


def test_auto_detect_is_not_run_when_the_host_has_its_own_setting(tmp_path) -> None:
    program = script(tmp_path, f"echo {P2}")
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program), "Acquire::http::Proxy::rb.example": P3})
    assert choice.for_url("http://rb.example/x") == P3
    assert runs(program) == []


def test_https_urls_run_the_https_program_only(tmp_path) -> None:
    """apt's AutoDetectProxy looks under the URL's own scheme (Acquire::https::Proxy-Auto-Detect)."""
    http_program = script(tmp_path, f"echo {P1}", "http-detect")
    https_program = script(tmp_path, f"echo {P2}", "https-detect")
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(http_program)})
    assert choice.for_url("https://rb.example/x") is None
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(http_program),
                       "Acquire::https::Proxy-Auto-Detect": str(https_program)})
    assert choice.for_url("https://rb.example/x") == P2
    assert runs(http_program) == [] and runs(https_program) == ["https://rb.example/x"]


def test_https_auto_detect_comes_before_the_http_per_host_setting(tmp_path) -> None:
    """apt runs it unless Acquire::https::Proxy::<host> is set, and stores its answer there."""
    program = script(tmp_path, f"echo {P2}")
    choice = apt_tree({"Acquire::https::Proxy-Auto-Detect": str(program), "Acquire::http::Proxy::rb.example": P3})
    assert choice.for_url("https://rb.example/x") == P2


def test_no_output_leaves_it_to_the_generic_settings(tmp_path) -> None:
    program = script(tmp_path, "true")
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program), "Acquire::http::Proxy": P1})
    assert choice.for_url("http://rb.example/x") == P1


@pytest.mark.parametrize("body, why", [
    ("exit 3", "exit status 3"),
    ("echo 'socks5h://127.0.0.1:1080'", "neither DIRECT nor an http(s):// proxy URL"),
    ("echo 'use the proxy, please'", "neither DIRECT nor an http(s):// proxy URL"),
    ("printf '\\377\\376\\n'", "not ASCII"),
    ("head -c 2000 /dev/zero | tr '\\0' x", "longer than 512 bytes"),
])
def test_a_failing_program_fails_the_host_never_goes_direct(tmp_path, body, why) -> None:
    program = script(tmp_path, body)
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program)})
    for _ in range(2):
        with pytest.raises(FetchError) as e:
            choice.for_url("http://rb.example/x")
        message = str(e.value)
        assert message.startswith(f"proxy auto-detect {program} failed for http://rb.example: ")
        assert why in message and "\n" not in message
    assert runs(program) == ["http://rb.example/x"]  # the failure is remembered too


def test_a_missing_program_fails_the_host(tmp_path) -> None:
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(tmp_path / "nowhere")})
    with pytest.raises(FetchError, match="proxy auto-detect .*nowhere failed for http://rb.example: "):
        choice.for_url("http://rb.example/x")


def test_a_hanging_program_is_killed_within_the_timeout(tmp_path) -> None:
    program = script(tmp_path, "sleep 30 & sleep 30")  # its children are killed with it
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program)})
    started = time.monotonic()
    with pytest.raises(FetchError, match="no answer within 0.5s"):
        choice.for_url("http://rb.example/x", timeout=0.5)
    assert time.monotonic() - started < 2.0


def test_a_program_that_answers_but_never_exits_is_a_failure(tmp_path) -> None:
    program = script(tmp_path, f"echo {P1}; exec sleep 30")
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program)})
    with pytest.raises(FetchError, match="did not exit within 0.5s"):
        choice.for_url("http://rb.example/x", timeout=0.5)


def test_the_program_is_not_run_through_a_shell(tmp_path) -> None:
    marker = tmp_path / "ran"
    choice = apt_tree({"Acquire::http::Proxy-Auto-Detect": f"touch {marker}"})
    with pytest.raises(FetchError):
        choice.for_url("http://rb.example/x")
    assert not marker.exists()


# -- through a real proxy ----------------------------------------------------------


def test_fetch_through_the_detected_proxy_on_the_fetchers_loop(tmp_path, rebuilder_server) -> None:
    """The program runs off the event loop, once, while many requests wait for it."""
    server = rebuilder_server()
    for i in range(20):
        (server.root / f"d{i}").write_bytes(b"doc %d" % i)
    with ForwardProxy({"rb.rebuilders.test": server.port}) as proxy:
        program = script(tmp_path, f"sleep 0.3; echo {proxy.url}")
        t = Transport(FetchSettings(cache_dir=None, deadline=5),
                      apt_tree({"Acquire::http::Proxy-Auto-Detect": str(program)}))
        try:
            import asyncio

            async def all_of_them() -> list[bytes]:
                deadline = time.monotonic() + 5
                return await asyncio.gather(*(t.fetch(f"http://rb.rebuilders.test/d{i}", deadline) for i in range(20)))

            bodies = t.wait(all_of_them(), time.monotonic() + 5)
        finally:
            t.close()
        assert bodies == [b"doc %d" % i for i in range(20)]
        [ran] = runs(program)
        assert ran.startswith("http://rb.rebuilders.test/d")
        assert sorted(proxy.requests()) == sorted(f"GET http://rb.rebuilders.test/d{i}" for i in range(20))
    assert sorted(server.requests) == sorted(f"/d{i}" for i in range(20))


def test_a_made_up_host_is_reachable_only_through_the_proxy(rebuilder_server) -> None:
    server = rebuilder_server()
    (server.root / "doc").write_bytes(b"evidence")
    with ForwardProxy({"rb.rebuilders.test": server.port}) as proxy:
        direct = Transport(FetchSettings(cache_dir=None, deadline=3), apt_tree({}))
        via = Transport(FetchSettings(cache_dir=None, deadline=3), apt_tree({"Acquire::http::Proxy": proxy.url}))
        try:
            with pytest.raises(FetchError):
                direct.get("http://rb.rebuilders.test/doc", time.monotonic() + 3)
            assert via.get("http://rb.rebuilders.test/doc", time.monotonic() + 3) == b"evidence"
        finally:
            direct.close()
            via.close()
        assert proxy.requests() == ["GET http://rb.rebuilders.test/doc"]


def test_https_goes_through_a_connect_tunnel(tmp_path, monkeypatch) -> None:
    from tests.support.server import RebuilderServer
    from tests.support.tls import make_tls_files

    tls = make_tls_files(tmp_path / "tls", ["rb.rebuilders.test"])
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "doc").write_bytes(b"secure evidence")
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    with RebuilderServer(tmp_path / "root", tls=tls.server_context()) as server, \
            ForwardProxy({"rb.rebuilders.test": server.port}) as proxy:
        t = Transport(FetchSettings(cache_dir=None, deadline=3),
                      apt_tree({"Acquire::http::Proxy": P1, "Acquire::https::Proxy": proxy.url}))
        try:
            assert t.get("https://rb.rebuilders.test/doc", time.monotonic() + 3) == b"secure evidence"
        finally:
            t.close()
        assert proxy.requests() == ["CONNECT rb.rebuilders.test:443"]
        assert server.requests == ["/doc"]
