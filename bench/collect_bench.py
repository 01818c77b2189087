#!/usr/bin/env python3
"""Benchmark of ``rebuildgate collect``.  Run by hand: ``.venv/bin/python bench/collect_bench.py [--quick]``.

The whole command as a child process (start-up, reading and hashing the
package files, fetching, writing the bundle and its manifest), for 200 small
``.deb`` files and N = 5 rebuilders on 127.0.0.1 (``bench/fastserver.py``,
separate processes) answering after 50 ms; every package is attested by
every rebuilder, so each run writes 1,000 documents.  Median of 5 runs, each
into a fresh directory.  Target: under 1.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fastserver import RemoteServers  # noqa: E402
from tests.support.packages import build_deb  # noqa: E402
from tests.support.policy import RebuilderEntry, write_policy  # noqa: E402
from tests.support.rebuilders import make_rebuilders  # noqa: E402


def run(tmp: Path, packages: int, n: int, latency: float, runs: int) -> tuple[list[float], str]:
    rbs = make_rebuilders(tmp, n)
    debs = []
    for i in range(packages):
        deb = build_deb(tmp / "debs", f"pkg{i}", "1.0-1", payload=f"pkg{i}\n".encode())
        for rb in rbs:
            rb.publish(f"pkg{i}", "1.0-1", {deb.name: deb.read_bytes()})
        debs.append(deb)
    servers = RemoteServers([rb.root for rb in rbs])
    servers.latency(latency)
    try:
        entries = [RebuilderEntry(rb.name, url, [rb.key.public_pem]) for rb, url in zip(rbs, servers.urls)]
        policy = write_policy(tmp / "policy.toml", entries, threshold=3, fetch={"deadline": 30.0})
        times, last = [], ""
        for i in range(runs):
            out = tmp / f"bundle-{i}"
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "collect", "--policy", str(policy),
                                   "-o", str(out), *map(str, debs)], capture_output=True, text=True, timeout=120)
            times.append(time.perf_counter() - started)
            if proc.returncode != 0:
                raise SystemExit(f"collect failed ({proc.returncode}): {proc.stderr[-2000:]}")
            last = proc.stdout.strip()
        return times, last
    finally:
        servers.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one run")
    ap.add_argument("--packages", type=int, default=200)
    ap.add_argument("--rebuilders", type=int, default=5)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds")
    args = ap.parse_args()
    runs = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="rbg-collect-bench-") as t:
        times, last = run(Path(t), args.packages, args.rebuilders, args.latency, runs)
    print(f"rebuildgate collect: {args.packages} packages x {args.rebuilders} rebuilders at "
          f"{args.latency * 1000:.0f} ms: median {statistics.median(times):.3f} s of {runs} "
          f"(runs: {', '.join(f'{x:.3f}' for x in times)})")
    print(f"last run: {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
