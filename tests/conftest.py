"""pytest fixtures shared by all rebuildgate tests.

Only tests/support is imported here, never rebuildgate itself, so a broken
library module fails its own tests instead of the whole collection.
"""

from __future__ import annotations

import itertools
import ssl
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.fifos import release_fifos
from tests.support.keys import GpgKey, TestKey, make_gpg_key, make_key
from tests.support.proxy import ForwardProxy
from tests.support.server import RebuilderServer

GPG_UID = "rebuildgate test rebuilder <rebuilder@rebuildgate.invalid>"

# tests/conformance reads ../shared, which only exists beside this checkout:
# it runs through `make conformance`, never in a plain `pytest`/`make test`.
# (A path given explicitly, `pytest tests/conformance`, is still collected:
# pytest applies collect_ignore only to what it finds by recursing.)
collect_ignore = ["conformance"]
REPO = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, with the reason, where many tests would fail one by one.

    The apt method drops to ``_apt`` and reads the checkout's venv; the
    CLI is run as ``nobody``; so every directory above the checkout must
    be searchable by other users.  A clone under ``/root`` (mode 0700 on
    Debian) fails otherwise in odd places: a test passes alone whose
    modules were imported before the drop, and fails in a full run.
    """
    import os
    import stat

    if os.geteuid() != 0:
        return
    for directory in [REPO, *REPO.parents]:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise pytest.UsageError(
                f"{directory} is not searchable by other users (mode {stat.filemode(directory.stat().st_mode)}), "
                f"but the tests run the APT method as _apt and the CLI as nobody from {REPO}: clone the "
                f"repository somewhere every user can read (e.g. /srv/rebuildgate), not under /root")


@pytest.fixture
def tmp_keys(tmp_path: Path) -> Callable[..., TestKey]:
    """Factory for fresh securesystemslib keys:
    `make(kind="ed25519", name=None) -> TestKey` (files under tmp_path/keys)."""
    counter = itertools.count()

    def make(kind: str = "ed25519", name: str | None = None) -> TestKey:
        return make_key(tmp_path / "keys", kind, name or f"{kind}-{next(counter)}")

    return make


@pytest.fixture(scope="session")
def gpg_keys(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., GpgKey]]:
    """Session-wide factory `make(uid=GPG_UID, algo="ed25519") -> GpgKey`.
    The same (uid, algo) gives the same key, so key generation happens once
    per session; every gpg-agent is stopped at the end."""
    made: dict[tuple[str, str], GpgKey] = {}
    directory = tmp_path_factory.mktemp("gpg")

    def make(uid: str = GPG_UID, algo: str = "ed25519") -> GpgKey:
        if (uid, algo) not in made:
            made[(uid, algo)] = make_gpg_key(directory, uid, algo)
        return made[(uid, algo)]

    yield make
    for key in made.values():
        key.cleanup()


@pytest.fixture(scope="session")
def gpg_key(gpg_keys: Callable[..., GpgKey]) -> GpgKey:
    """One ed25519 OpenPGP key for the whole session."""
    return gpg_keys()


@pytest.fixture
def rebuilder_server(tmp_path: Path) -> Iterator[Callable[..., RebuilderServer]]:
    """Factory for started servers: `make(root=None, latency=0.0, tls=None)`
    (``tls``: an ssl server context, tests.support.tls); without root each
    server gets a fresh empty directory. All are stopped at teardown, hung
    connections included."""
    servers: list[RebuilderServer] = []
    counter = itertools.count()

    def make(root: Path | None = None, latency: float = 0.0, tls: ssl.SSLContext | None = None) -> RebuilderServer:
        if root is None:
            root = tmp_path / f"rebuilder-{next(counter)}"
            root.mkdir()
        server = RebuilderServer(root, latency=latency, tls=tls).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A started forward proxy on 127.0.0.1 (absolute-form GET and CONNECT, logged);
    ``forward_proxy.map(name, port)`` makes a made-up host name reachable through it only."""
    with ForwardProxy() as proxy:
        yield proxy


@pytest.fixture
def fifos() -> Iterator[list[Path]]:
    """Named pipes a test planted; released at teardown so no thread stays
    blocked in open() after the test (and the interpreter can exit)."""
    made: list[Path] = []
    yield made
    release_fifos(made)
