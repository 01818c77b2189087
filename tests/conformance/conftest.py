"""Conformance tests: rebuildgate against metadata that other projects published.

Those files live in the directory `shared` beside this checkout
(`../shared/compat/`, `../shared/realworld/`), never in the project, so these
tests run only through `make conformance` (CI runs it after `make test`);
tests/conftest.py keeps this directory out of every other run.

The directory is `$REBUILDGATE_SHARED` when that is set, else `<repo>/../shared`.
When it is missing every conformance test fails (a skipped conformance test
would pass CI without checking anything), saying where it looked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = "REBUILDGATE_SHARED"


def shared_dir() -> tuple[Path, str]:
    """The shared directory, and how it was chosen (for the messages)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).resolve(), f"set by ${ENV}"
    return (REPO.parent / "shared").resolve(), f"the default {REPO.name}/../shared; ${ENV} is not set"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        _where, how = shared_dir()
        pytest.fail(
            f"conformance: {what} not found at {path} (shared directory: {how}).\n"
            f"These tests read other projects' published metadata, which lives beside the checkout, "
            f"not in it: put it at {REPO.parent / 'shared'} or set {ENV}=/path/to/shared. "
            f"(`make test` does not need it.)",
            pytrace=False,
        )
    return path


def pytest_report_header(config: pytest.Config) -> str:
    where, how = shared_dir()
    state = "" if where.is_dir() else " MISSING: every conformance test will fail"
    return f"conformance: shared directory {where} ({how}){state}"


@pytest.fixture(scope="session")
def shared() -> Path:
    where, _how = shared_dir()
    return _need(where, "the shared directory")


@pytest.fixture(autouse=True)
def _shared_is_there(shared: Path) -> None:
    """Every conformance test fails, not skips, without the shared directory."""


@pytest.fixture(scope="session")
def compat(shared: Path) -> Path:
    """`<shared>/compat`: apt-transport-in-toto's and rebuilderd's files."""
    return _need(shared / "compat", "compat/")


@pytest.fixture(scope="session")
def realworld(shared: Path) -> Path:
    """`<shared>/realworld`: published evidence sets and their run.sh."""
    return _need(shared / "realworld" / "run.sh", "realworld/run.sh").parent
