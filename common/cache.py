"""A small on-disk cache of fetched evidence documents.

Only bodies that a rebuilder served with ``200 OK`` are kept, for
``cache_ttl`` seconds.  A cached document is never trusted as such: it is
verified again on every use, exactly like a fresh one, so a poisoned cache
can cost a vote (by going stale) but never forge one.  Any error while
reading or writing the cache is treated as a miss: the cache can only make
verification faster, never make it fail.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path


class DocumentCache:
    def __init__(self, directory: Path, ttl: int, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._made = False  # the directory exists (checked once, not per document)

    def _path(self, url: str) -> Path:
        return self.directory / hashlib.sha256(url.encode("utf-8")).hexdigest()

    def get(self, url: str, now: float | None = None) -> bytes | None:
        if self.ttl <= 0:
            return None
        path = self._path(url)
        try:
            st = path.stat()
            if (now or time.time()) - st.st_mtime > self.ttl or st.st_size > self.max_bytes:
                return None
            with open(path, "rb") as f:
                header = f.readline()
                body = f.read(self.max_bytes + 1)
        except OSError:
            return None
        # The URL is stored in the file so a hash collision or a file moved
        # between entries cannot serve another URL's document.
        if header.rstrip(b"\n") != url.encode("utf-8") or len(body) > self.max_bytes:
            return None
        return body

    def put(self, url: str, body: bytes) -> None:
        if self.ttl <= 0 or len(body) > self.max_bytes or "\n" in url:
            return
        try:
            if not self._made:
                self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
                self._made = True
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(url.encode("utf-8") + b"\n" + body)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self._path(url))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            return  # not writable (e.g. after dropping privileges): just no cache
