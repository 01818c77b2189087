"""One way to write a file that is either wholly old or wholly new.

Every file rebuildgate writes for later runs (the halt state, cached
evidence) goes through :func:`write_atomic`: a crash, a full disk or a
concurrent writer can never leave a half-written file that a later run
would misread, nor a stray temporary file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Write *data* to *path*: temporary file in the same directory, write,
    fsync, rename over *path*, fsync the directory.

    Raises OSError (the temporary file removed) if any step fails, so that
    the caller knows the new content was not saved.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
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
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # renamed; a directory we cannot open cannot be synced either
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename stands
    finally:
        os.close(dir_fd)
