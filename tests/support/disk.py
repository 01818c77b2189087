"""A full disk for tests: a tiny tmpfs mounted over a directory, filled up.

Tests run as root (the package managers need it), so file permissions
cannot make a directory unwritable; a file system with no space left can.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def full_directory(path: Path, size_kib: int = 16) -> Iterator[Path]:
    """Mount a *size_kib* KiB tmpfs on *path* (created if needed), fill it to
    the last byte, and unmount it on exit.  Any new file written there fails
    with ENOSPC; files put there before filling stay readable."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path)],
                   check=True, capture_output=True, timeout=30)
    try:
        filler = path / ".filler"
        with open(filler, "wb") as f:
            with contextlib.suppress(OSError):
                f.write(b"\0" * (size_kib * 1024 * 2))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)
