"""Evidence follows apt's own proxy (Qubes templates reach the network only through it)."""

from __future__ import annotations

import shutil

import pytest

from tests.apt_transport.harness import AptEnv, flat_source
from tests.apt_transport.world import World

pytestmark = pytest.mark.timeout(120)


def test_evidence_is_fetched_through_apts_proxy(world: World, apt: AptEnv, rebuilder_server) -> None:
    hello = world.package("hello")
    repo = world.repo([hello])
    rb = world.rebuilder("rb0")
    world.attest(rb, hello)
    # The proxy answers absolute-form requests from its own tree: a copy of
    # the repository and of the rebuilder's evidence, so the rebuilder itself
    # can be switched off and still "answer" through the proxy.
    proxy_root = world.base / "proxy"
    shutil.copytree(repo.directory, proxy_root)
    shutil.copytree(rb.root, proxy_root, dirs_exist_ok=True, symlinks=True)
    proxy = rebuilder_server(proxy_root)
    rebuilder_url = rb.url
    policy = world.policy([rb], threshold=1)
    rb.server.stop()  # reachable only through the proxy from now on
    apt.sources([flat_source(repo.http, "rebuildgate+")])
    opts = {"Rebuildgate::Policy": str(policy), "Acquire::http::Proxy": proxy.url}
    assert apt.update(options=opts).returncode == 0
    result = apt.download("hello", options=opts)
    assert result.returncode == 0, result
    assert apt.downloaded() == ["hello_1.0-1_all.deb"]
    assert f"{rebuilder_url}/sources/hello/1.0-1/metadata" in proxy.requests
    [decision] = world.decisions()
    assert decision["verdict"] == "accepted" and decision["votes"] == ["rb0"]
