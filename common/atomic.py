"""Replace a file atomically: readers see the old content or the new, never a mix.

Every file rebuildgate writes and later trusts to be whole (cached evidence,
halt state) goes through :func:`write_atomic`: a crash, a full disk or a
concurrent reader must never see a truncated document.  The new content is
written to a temporary file in the same directory (a rename is only atomic
within one file system), flushed to disk, renamed over the target, and the
directory is flushed too so that the rename itself survives a crash.  The
temporary file is removed on any failure, so failures leave no litter.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: Path | str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Replace *path* with *data* (permissions *mode*), atomically and durably.

    Raises OSError if any step fails.  Up to the rename, *path* is then
    unchanged; no temporary file is ever left behind.  ``durable=False``
    skips both flushes: still atomic for readers, but a crash may lose the
    write (or, on some file systems, leave an empty file).  Only for data
    that is re-checked on every use and may be lost, such as cached
    evidence: two fsyncs per document cost more than fetching it.
    """
    def write(fd: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    write_atomic_with(path, write, mode, durable)


def write_atomic_with(path: Path | str, write: Callable[[int], None], mode: int = 0o644,
                      durable: bool = True) -> None:
    """:func:`write_atomic` for content too large to hold in memory (a tar of
    an evidence bundle): ``write(fd)`` writes it to the temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            write(fd)
            os.fchmod(fd, mode)  # mkstemp makes 0600; the umask does not apply to fchmod
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Flush the directory entry of the rename.

    File systems that cannot flush a directory say so with EINVAL (that is
    no error); any other failure is raised, since the rename may then not
    survive a crash.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise
    finally:
        os.close(fd)
