"""Fixtures for the dnf plugin tests: one world of packages and rebuilders per session."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.dnf_plugin.world import World, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Packages, repositories and three HTTP rebuilders (see world.py), built once."""
    built = build_world(tmp_path_factory.mktemp("dnf-world"))
    yield built
    built.close()


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Path:
    """Where one test's dnf sandbox lives (fresh installroot and cache per test)."""
    return tmp_path / "dnf"
