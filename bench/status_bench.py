#!/usr/bin/env python3
"""Benchmark of ``rebuildgate status``.  Run by hand: ``.venv/bin/python bench/status_bench.py [--quick]``.

2,000 installed packages, N = 3 rebuilders answering after 50 ms each
(bench/fastserver.py: one lean server process per rebuilder), threshold 2,
the default ``max_workers`` (256 since stop 11; 64 before), no evidence cache.  Target: under 10 s.

The installed system is a throwaway root in apt's ``Dir`` layout holding a
*generated* dpkg status file (2,000 ``install ok installed`` stanzas) and a
flat repository whose generated Packages index lists the same versions
with their SHA256, read by a real ``apt-get update`` into the root's lists.
No .deb is built or installed: ``status`` never opens a package file when
an index lists the version, so this is the code path of a real system
(python-apt reads the status file and the indexes; every package is
located by its index record, then one batch verification).  Each
rebuilder publishes one signed link per package (package-rebuilder layout).

Printed: the median wall time of ``rebuildgate status --root ROOT --json``
as a child process (start-up, apt's cache, 6,000 lookups, JSON), the same
with three ``--what-if`` scenarios (they fetch nothing more), the time to
read the installed packages alone, and each run's peak resident memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fastserver import RemoteServers  # noqa: E402
from rebuildgate.policy import FetchSettings  # noqa: E402
from tests.apt_transport.harness import AptEnv, flat_source  # noqa: E402
from tests.support.policy import RebuilderEntry, write_policy  # noqa: E402
from tests.support.rebuilders import make_rebuilders  # noqa: E402

PACKAGES = 2000
REBUILDERS = 3
THRESHOLD = 2
LATENCY = 0.05
TARGET = 10.0


def content(i: int) -> bytes:
    return f"package {i}\n".encode()


def name(i: int) -> str:
    return f"pkg{i:04d}"


def write_system(apt: AptEnv, repo: Path, count: int) -> None:
    """The generated status file, and a flat repository whose index lists the same versions."""
    status, index = [], []
    for i in range(count):
        common = [f"Package: {name(i)}", "Priority: optional", "Section: misc", "Installed-Size: 1",
                  "Maintainer: bench <bench@rebuildgate.invalid>", "Architecture: all", "Version: 1.0-1",
                  f"Description: benchmark package {i}"]
        status.append("\n".join([common[0], "Status: install ok installed", *common[1:]]))
        data = content(i)
        index.append("\n".join([*common, f"Filename: ./{name(i)}_1.0-1_all.deb", f"Size: {len(data)}",
                                f"SHA256: {hashlib.sha256(data).hexdigest()}"]))
    apt.status.write_text("\n\n".join(status) + "\n")
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "Packages").write_text("\n\n".join(index) + "\n")
    release = subprocess.run(["apt-ftparchive", "release", "."], cwd=repo, capture_output=True, check=True)
    (repo / "Release").write_bytes(release.stdout)


def publish(rbs, count: int) -> None:
    for rb in rbs:
        for i in range(count):
            rb.publish(name(i), "1.0-1", {f"{name(i)}_1.0-1_all.deb": content(i)})


def run_status(args: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """(seconds, peak RSS in MiB of that child, the summary object)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rebuildgate.cli", "status", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = out.decode().splitlines()
    if proc.returncode not in (0, 1) or not lines:
        raise RuntimeError(f"rebuildgate status failed with {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024, json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one run each instead of five")
    ap.add_argument("--packages", type=int, default=PACKAGES)
    args = ap.parse_args()
    runs = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="rbg-status-bench-") as tmp:
        work = Path(tmp)
        setup = time.perf_counter()
        apt = AptEnv(work / "system")
        repo = work / "repo"
        write_system(apt, repo, args.packages)
        apt.sources([flat_source(f"file:{repo}", scheme="")])
        update = apt.update()
        if update.returncode != 0:
            print(update, file=sys.stderr)
            return 2
        rbs = make_rebuilders(work / "rebuilders", REBUILDERS)
        publish(rbs, args.packages)
        servers = RemoteServers([rb.root for rb in rbs])
        try:
            servers.latency(LATENCY)
            entries = [RebuilderEntry(rb.name, url, [rb.key.public_pem]) for rb, url in zip(rbs, servers.urls)]
            policy = write_policy(work / "policy.toml", entries, threshold=THRESHOLD,
                                  fetch={"deadline": 30.0, "read_timeout": 10.0}, log=work / "decisions.log")
            print(f"set-up (status file, index, {REBUILDERS * args.packages} signed links): "
                  f"{time.perf_counter() - setup:.1f} s", file=sys.stderr)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("APT_", "REBUILDGATE_"))}
            base = ["--policy", str(policy), "--root", str(apt.root), "--json"]
            what_ifs = ["--what-if", "threshold=1", "--what-if", "threshold=3", "--what-if", "without=rb3"]
            rows = []
            for label, extra in (("status", []), ("status + 3 --what-if", what_ifs)):
                times, peaks = [], []
                summary: dict = {}
                for _ in range(runs):
                    seconds, peak, summary = run_status(base + extra, env)
                    times.append(seconds)
                    peaks.append(peak)
                attested = summary["counts"]["attested"]
                rows.append((label, statistics.median(times), max(peaks), attested))
            read = []
            for _ in range(runs):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import sys; from rebuildgate.apt.installed import "
                                "installed_debs; installed_debs(root=sys.argv[1])", str(apt.root)], env=env,
                               check=True)
                read.append(time.perf_counter() - started)
        finally:
            servers.close()
    print(f"## rebuildgate status: {args.packages} installed packages, N = {REBUILDERS} HTTP rebuilders on "
          f"127.0.0.1 at {LATENCY * 1000:.0f} ms, threshold {THRESHOLD}, max_workers {FetchSettings().max_workers} (the default; median of {runs})\n")
    print("| run | seconds | peak RSS (MiB) | attested by >= M | target |\n|---|---|---|---|---|")
    for label, seconds, peak, attested in rows:
        verdict = "ok" if seconds < TARGET else "MISSED"
        print(f"| {label} | {seconds:.2f} | {peak:.0f} | {attested}/{args.packages} | < {TARGET:g} s {verdict} |")
    print(f"| reading the installed packages alone (python start-up + apt's cache + locating) | "
          f"{statistics.median(read):.2f} | - | - | - |")
    return 0 if all(seconds < TARGET for _, seconds, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
