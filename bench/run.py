#!/usr/bin/env python3
"""`make bench`: every benchmark, one after another, each printing its table."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    status = 0
    for name in ("core_bench.py", "apt_bench.py", "dnf_bench.py", "collect_bench.py", "floor_bench.py"):
        if (HERE / name).exists():
            print(f"\n# {name}\n", flush=True)
            status |= subprocess.run([sys.executable, str(HERE / name), *sys.argv[1:]]).returncode
    sys.exit(status)
