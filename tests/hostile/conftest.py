"""Fixtures local to the hostile tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from .helpers import Behaviour, RawServer


@pytest.fixture
def raw_server() -> Iterator[Callable[[Behaviour], RawServer]]:
    """Factory for :class:`RawServer`; all are stopped at teardown, which
    releases any client thread still stuck on them."""
    servers: list[RawServer] = []

    def make(behaviour: Behaviour) -> RawServer:
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
