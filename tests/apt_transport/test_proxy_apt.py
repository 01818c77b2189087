"""Evidence follows apt's own proxy (Qubes templates reach the network only through it).

Real apt-get, real proxy (tests/support/proxy.py): the rebuilders live under
made-up names (``rb0.rebuilders.test``) that only the proxy resolves, so a
request that went around it would fail; each test also compares the proxy's
log with the rebuilders' own request logs.  One rebuilder speaks https, inside
a CONNECT tunnel, with a throwaway CA given to the method as SSL_CERT_FILE.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.apt_transport.harness import AptEnv, blocked_lines, fetch, flat_source
from tests.apt_transport.world import Package, Repo, World
from tests.support.proxy import ForwardProxy
from tests.support.rebuilders import FakeRebuilder
from tests.support.tls import make_tls_files

pytestmark = pytest.mark.timeout(120)
DOMAIN = "rebuilders.test"
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens: a request sent there fails


def hidden_name(rb: FakeRebuilder) -> str:
    return f"{rb.name}.{DOMAIN}"


class Setup:
    """Package *hello* in a repository on 127.0.0.1, attested by rb0 (http) and rb1 (https);
    both reachable only through *proxy*."""

    def __init__(self, world: World, proxy: ForwardProxy, rebuilder_server, *, tampered: bool = False) -> None:
        self.world, self.proxy = world, proxy
        self.hello: Package = world.package("hello")
        served = world.tampered(self.hello) if tampered else self.hello
        self.repo: Repo = world.repo([served])
        self.rb0 = world.rebuilder("rb0")
        self.rb1 = world.rebuilder("rb1", serve=False)
        self.tls = make_tls_files(world.base / "tls", [hidden_name(self.rb1)])
        self.rb1.server = rebuilder_server(self.rb1.root, tls=self.tls.server_context())
        for rb in (self.rb0, self.rb1):
            world.attest(rb, self.hello)
            proxy.map(hidden_name(rb), rb.server.port)
        self.urls = {"rb0": f"http://{hidden_name(self.rb0)}", "rb1": f"https://{hidden_name(self.rb1)}"}
        self.policy = world.policy([self.rb0, self.rb1], threshold=2, urls=self.urls)

    def env(self) -> dict[str, str]:
        """The CA for the method (apt passes its environment on to the method it starts)."""
        env = {"SSL_CERT_FILE": str(self.tls.ca)}
        for other in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # these would win over SSL_CERT_FILE
            if os.environ.get(other):
                env[other] = str(self.tls.ca)
        return env

    def download(self, apt: AptEnv, **options: str):
        return fetch(apt, self.repo.http, self.policy, "hello", env=self.env(), **options)

    def assert_evidence_went_through_the_proxy(self) -> None:
        """Every request a rebuilder answered came through the proxy, and the decision used them."""
        log = self.proxy.requests()
        rb0_via_proxy = sorted(line for line in log if f"//{hidden_name(self.rb0)}/" in line)
        assert rb0_via_proxy, log
        assert rb0_via_proxy == sorted(f"GET {self.urls['rb0']}{path}" for path in self.rb0.server.requests)
        assert f"GET {self.urls['rb0']}/sources/hello/1.0-1/metadata" in rb0_via_proxy
        # https: the proxy sees only the tunnel; the rebuilder saw the requests inside it.
        assert f"CONNECT {hidden_name(self.rb1)}:443" in log
        assert "/sources/hello/1.0-1/metadata" in self.rb1.server.requests
        assert not any(hidden_name(self.rb1) in line for line in log if not line.startswith("CONNECT "))


@pytest.fixture
def setup(world: World, forward_proxy: ForwardProxy, rebuilder_server) -> Setup:
    return Setup(world, forward_proxy, rebuilder_server)


def test_evidence_is_fetched_through_apts_proxy(setup: Setup, apt: AptEnv) -> None:
    """Acquire::http::Proxy alone: apt's https method falls back to it, so the https rebuilder
    is reached through the same proxy (CONNECT)."""
    result = setup.download(apt, **{"Acquire::http::Proxy": setup.proxy.url})
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    [decision] = setup.world.decisions()
    assert decision["verdict"] == "accepted" and sorted(decision["votes"]) == ["rb0", "rb1"]
    setup.assert_evidence_went_through_the_proxy()


def test_a_direct_fetch_cannot_reach_the_rebuilders(setup: Setup, apt: AptEnv) -> None:
    """Without the proxy the made-up names do not resolve: the same install is blocked."""
    result = setup.download(apt)
    assert result.returncode != 0
    assert blocked_lines(result, "hello"), result
    assert apt.downloaded() == []
    assert setup.proxy.requests() == []
    assert setup.rb0.server.requests == [] and setup.rb1.server.requests == []


def test_an_unattested_package_is_blocked_through_the_proxy(world: World, forward_proxy: ForwardProxy,
                                                             rebuilder_server, apt: AptEnv) -> None:
    setup = Setup(world, forward_proxy, rebuilder_server, tampered=True)
    result = setup.download(apt, **{"Acquire::http::Proxy": forward_proxy.url})
    assert result.returncode != 0
    assert blocked_lines(result, "hello"), result
    assert apt.downloaded() == []
    [decision] = world.decisions()
    assert decision["verdict"] != "accepted" and decision["votes"] == []
    setup.assert_evidence_went_through_the_proxy()


def test_per_host_proxy_and_direct(setup: Setup, apt: AptEnv) -> None:
    """Acquire::http(s)::Proxy::<rebuilder> names the proxy, ...::Proxy::127.0.0.1 is DIRECT
    (the repository), and the scheme-wide proxy is a dead one nothing may use."""
    options = {"Acquire::http::Proxy": DEAD_PROXY, "Acquire::https::Proxy": DEAD_PROXY,
               f"Acquire::http::Proxy::{hidden_name(setup.rb0)}": setup.proxy.url,
               f"Acquire::https::Proxy::{hidden_name(setup.rb1)}": setup.proxy.url,
               "Acquire::http::Proxy::127.0.0.1": "DIRECT"}
    result = setup.download(apt, **options)
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    setup.assert_evidence_went_through_the_proxy()
    # The repository was fetched directly (origin-form requests on its own server, none via the proxy).
    assert "/./hello_1.0-1_all.deb" in setup.repo.server.requests
    assert not any("127.0.0.1" in line for line in setup.proxy.requests())


def detect_program(world: World, answer: str) -> tuple[Path, Path]:
    """An auto-detect program run by the method (as apt's sandbox user): logs its argument."""
    log = world.base / "detect.log"
    log.touch()
    log.chmod(0o666)
    program = world.base / "detect-proxy"
    program.write_text(f'#!/bin/sh\necho "$1" >> {log}\n{answer}\n')
    program.chmod(0o755)
    return program, log


def test_proxy_auto_detect_names_the_proxy(setup: Setup, apt: AptEnv) -> None:
    """Evidence and the downloads themselves follow the program's answer: the
    repository too lives under a name only the proxy resolves.  apt runs the
    program for its own http method, but for a ``rebuildgate+http`` entry it
    looks under ``Acquire::rebuildgate+http::`` and runs nothing; the method
    asks it on the http method's behalf and hands the answer on as apt would
    (the ``Proxy`` field of each download)."""
    program, log = detect_program(setup.world, f"echo {setup.proxy.url}")
    assert setup.repo.server is not None
    setup.proxy.map("repo.test", setup.repo.server.port)
    options = {"Acquire::http::Proxy-Auto-Detect": str(program), "Acquire::https::Proxy-Auto-Detect": str(program)}
    result = fetch(apt, "http://repo.test/", setup.policy, "hello", env=setup.env(), **options)
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    setup.assert_evidence_went_through_the_proxy()
    assert "GET http://repo.test/./hello_1.0-1_all.deb" in setup.proxy.requests()
    # Run once per host and method process: the repository's (for apt-get update, then for
    # the download), each rebuilder's (with the evidence URL).
    ran = log.read_text().splitlines()
    hosts = sorted(url.split("/")[2] for url in ran)
    assert hosts == sorted([hidden_name(setup.rb0), hidden_name(setup.rb1), "repo.test", "repo.test"]), ran
    assert not any(line.startswith("GET http://127.0.0.1") for line in setup.proxy.requests())
    assert all(url.startswith((setup.urls["rb0"] + "/", setup.urls["rb1"] + "/", "http://repo.test/")) for url in ran)


def test_a_failing_auto_detect_fails_the_download_too(setup: Setup, apt: AptEnv) -> None:
    """apt fails a download whose auto-detect program fails; so does the method, in one line."""
    program, _log = detect_program(setup.world, "exit 3")
    opts = {"Rebuildgate::Policy": str(setup.policy), "Acquire::http::Proxy-Auto-Detect": str(program)}
    apt.sources([flat_source(setup.repo.http)])
    result = apt.update(options=opts, env=setup.env())
    assert f"proxy auto-detect {program} failed for http://127.0.0.1:" in result.output, result
    assert setup.repo.server is not None and setup.repo.server.requests == []


def test_a_failing_auto_detect_blocks_and_never_goes_direct(setup: Setup, apt: AptEnv) -> None:
    # The program answers DIRECT for the repository (so apt can download) and fails for rb0.
    # A direct connection would work for rb0 here (its name mapped to nothing, but its URL
    # on 127.0.0.1): the failure must still block.
    program, log = detect_program(setup.world, f'case "$1" in {setup.repo.http}*) echo DIRECT ;; *) exit 7 ;; esac')
    setup.urls["rb0"] = setup.rb0.server.url
    setup.policy = setup.world.policy([setup.rb0, setup.rb1], threshold=1, urls=setup.urls)
    result = setup.download(apt, **{"Acquire::http::Proxy-Auto-Detect": str(program)})
    assert result.returncode != 0
    assert blocked_lines(result, "hello"), result
    assert f"proxy auto-detect {program} failed for {setup.rb0.server.url}: exit status 7" in result.output
    assert setup.rb0.server.requests == []
    ran = [url for url in log.read_text().splitlines() if not url.startswith(setup.repo.http)]
    assert ran == [f"{setup.rb0.server.url}/sources/hello/1.0-1/metadata"]
