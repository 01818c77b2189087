"""Named pipes planted by tests (in file:// evidence trees, in the cache
directory): a reader that opens one blocks until a writer comes, so a test
that exposes such a hang must release it, or the whole run hangs after it.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Sequence


def release_fifos(fifos: Sequence[Path], rounds: int = 20) -> None:
    """Unblock every thread stuck opening one of *fifos* and make later opens
    of those paths harmless (the pipe is replaced by an empty regular file,
    the old pipe is opened for writing until no reader is left)."""
    for fifo in fifos:
        if not fifo.exists() and not fifo.is_symlink():
            continue
        keep = fifo.with_name(fifo.name + ".held")
        try:
            os.link(fifo, keep)
        except OSError:
            keep = None
        tmp = fifo.with_name(fifo.name + ".tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, fifo)
        if keep is None:
            continue
        idle = 0
        for _ in range(rounds * 10):
            try:
                fd = os.open(keep, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                idle += 1
                if idle >= 3:
                    break
                time.sleep(0.02)
                continue
            idle = 0
            os.close(fd)
            time.sleep(0.01)
        keep.unlink()
