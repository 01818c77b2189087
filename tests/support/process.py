"""The result of running a package manager in a test, shown in full when an assertion fails."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass
class CommandResult:
    """One run: exit status, output, wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines(self, needle: str) -> list[str]:
        return [line for line in self.output.splitlines() if needle in line]

    def __str__(self) -> str:  # what pytest shows when an assertion about it fails
        return (f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.seconds:.2f}s\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")

    __repr__ = __str__


def run_command(cmd: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120,
                cwd: str | None = None) -> CommandResult:
    """Run *cmd* with a hard timeout (a hung package manager fails the test, never the suite)."""
    started = time.monotonic()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=dict(env) if env is not None else None,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
    return CommandResult(list(cmd), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
