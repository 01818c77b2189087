"""An empty evidence cache before a benchmark run, the way a user's cache is empty of a new transaction.

Deleting a thousand cache entries right before a run makes the next
thousand file creations several times slower on ext4 (it avoids reusing
inodes freed in the last half minute, and scans past them): the
pre-prompt hook's 200-package run spent 0.25 s more waiting for its cache
writes after ``rm -rf`` of the previous run's entries than after moving
them aside (measured on this project's 2-core test machine).  A user's
cache is never emptied seconds before an install, so the benchmarks move
the previous run's cache aside, beside it in the benchmark's work
directory, which is deleted after the tables are printed.
"""

from __future__ import annotations

import itertools
from pathlib import Path

_runs = itertools.count()


def empty_cache(cache: Path) -> None:
    """Make *cache* an empty directory (0755), moving what it held beside it."""
    if cache.exists():
        aside = cache.parent / f"{cache.name}.set-aside"
        aside.mkdir(exist_ok=True)
        cache.rename(aside / str(next(_runs)))
    cache.mkdir(mode=0o755)

