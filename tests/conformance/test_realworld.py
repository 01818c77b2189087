"""Every real-world evidence set in <shared>/realworld, through the installed
rebuildgate command: `<shared>/realworld/run.sh rebuildgate` must exit 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def rebuildgate_command() -> Path:
    """The rebuildgate script of the environment running the tests."""
    script = Path(sys.executable).parent / "rebuildgate"
    if not script.is_file():
        pytest.fail(f"conformance: no rebuildgate command at {script}: install the project into the "
                    f"environment of {sys.executable} (`make venv`)", pytrace=False)
    return script


@pytest.mark.timeout(600)
def test_realworld_sets_all_pass(realworld: Path) -> None:
    r = subprocess.run([str(realworld / "run.sh"), str(rebuildgate_command())],
                       capture_output=True, text=True, timeout=580)
    status, lines = r.returncode, r.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL ")]
    summary = lines[-1] if lines else "(no output)"
    assert status == 0 and not failed, (
        f"{realworld / 'run.sh'} exited {status}: {summary}\n" + "\n".join(failed)
        + (f"\nstderr:\n{r.stderr}" if r.stderr.strip() else ""))
    assert summary.endswith(" passed, 0 failed"), r.stdout
