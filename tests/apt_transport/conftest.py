"""Fixtures for the apt method tests: a World and a private apt per test.

Every test here runs real apt-get; an autouse fixture checks that the host's
dpkg database and apt state are the same afterwards (nothing may leak out of
the private APT_CONFIG).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.apt_transport.harness import AptEnv, host_state, shared_tmpdir
from tests.apt_transport.world import World


@pytest.fixture(autouse=True)
def host_untouched() -> Iterator[None]:
    before = host_state()
    yield
    assert host_state() == before, "the host's dpkg/apt state changed"


@pytest.fixture
def world(rebuilder_server, tmp_keys) -> Iterator[World]:
    """Packages, repos and rebuilders in a fresh directory _apt can read."""
    base = shared_tmpdir()
    yield World(base, make_server=lambda root: rebuilder_server(root),
                make_key_for=lambda name: tmp_keys("ed25519", name))
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def apt(world: World) -> AptEnv:
    """A private apt (state, cache, config, methods) inside the world."""
    return AptEnv(world.base / "apt")


@pytest.fixture
def apt_factory(world: World) -> Callable[..., AptEnv]:
    """More private apts in the same world: `make(name, **AptEnv kwargs)`."""
    def make(name: str, **kw) -> AptEnv:
        return AptEnv(world.base / name, **kw)
    return make
