#!/usr/bin/env python3
"""Benchmark of the verification core.  Run by hand: ``.venv/bin/python bench/core_bench.py [--quick]``.

1. Parse + verify one evidence document, per format, Statements included
   (median over many runs).
2. ``Verifier.verify_many`` for 20 and 200 packages with N = 1, 3, 5 HTTP
   rebuilders on 127.0.0.1 answering instantly or after 50 ms, threshold
   1, 2, 3 (median of several runs, each with a fresh Verifier and no cache).
3. The same 200-package, N = 5 batch with one hostile rebuilder among the
   five, side by side with all five honest (same run, runs alternated, deadline
   3 s): one answering every request 0.3 s before the deadline, one serving
   2 MiB documents with 8 bogus signatures.  Target: within 2x.
4. ``verify_many`` of 200 packages x 5 rebuilders (0 ms) through the on-disk
   evidence cache (issue #12: apt's pre-prompt hook fills it, the method
   reads it and verifies every document again): cold (cache emptied before
   the run, which fills it) and warm (every document read from the cache),
   wall and CPU seconds of this process (the servers are other processes),
   median of several runs, the two alternated.
5. Peak resident memory of the 200-package, N = 5 run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cachedir import empty_cache  # noqa: E402
from bench.fastserver import RemoteServers  # noqa: E402
from rebuildgate.evidence import KeySet, load_gpg_keys, load_key_files, verify_document  # noqa: E402
from rebuildgate.model import Artifact  # noqa: E402
from rebuildgate.policy import load_policy  # noqa: E402
from rebuildgate.verify import Verifier  # noqa: E402
from tests.support.keys import EcdsaSha256Signer, make_gpg_key, make_key  # noqa: E402
from tests.support.links import (digests, make_link, make_statement, rebuilderd_public_pem,  # noqa: E402
                                 sign_dsse, sign_legacy, sign_legacy_gpg, sign_rebuilderd, sign_statement)
from tests.support.policy import RebuilderEntry, write_policy  # noqa: E402
from tests.support.rebuilders import attest_packages, make_rebuilders  # noqa: E402


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def formats(tmp: Path, runs: int) -> list[tuple[str, float]]:
    link = make_link({"hello_1.0-1_all.deb": b"x" * 1000})
    rows = []
    for kind in ("ed25519", "ecdsa", "rsa"):
        key = make_key(tmp, kind, f"f-{kind}")
        ks = KeySet("rb", load_key_files([key.public_pem], "rb", tmp / "p"))
        for fmt, doc in (("legacy", sign_legacy(link, key.signer)), ("dsse", sign_dsse(link, key.signer))):
            rows.append((f"{fmt} {kind}", median_ms(lambda: verify_document(doc, ks), runs)))
    # in-toto Statements in DSSE: a provenance naming the package among 20
    # files (a source package's binaries), with each key kind and ECDSA
    # signed the way in-toto-java and cosign sign (SHA-256 on P-521).
    subjects = {f"hello-{i}_1.0-1_all.deb": b"x" * i for i in range(19)}
    subjects["hello_1.0-1_all.deb"] = b"x" * 1000
    for predicate, version in (("slsa-v1", "v1"), ("link-v0.3", "v1"), ("slsa-v0.2", "v0.1")):
        for kind in ("ed25519", "ecdsa", "rsa", "ecdsa-p521/sha256"):
            key = make_key(tmp, kind.split("/")[0], f"s-{kind.replace('/', '-')}-{predicate}")
            signer = EcdsaSha256Signer(key) if kind.endswith("/sha256") else key.signer
            ks = KeySet("rb", load_key_files([key.public_pem], "rb", tmp / "p"))
            doc = sign_statement(make_statement(subjects, predicate, version), signer)
            rows.append((f"Statement {version} {predicate} (20 subjects) {kind}",
                         median_ms(lambda: verify_document(doc, ks), runs)))
    key = make_key(tmp, "ed25519", "f-rbd")
    doc = sign_rebuilderd(link, key)
    ks = KeySet("rb", load_key_files([rebuilderd_public_pem(key, tmp / "rbd.pub")], "rb", tmp / "p"))
    rows.append(("rebuilderd ed25519", median_ms(lambda: verify_document(doc, ks), runs)))
    gpg = make_gpg_key(tmp / "gpg", "Bench <bench@test>")
    try:
        doc = sign_legacy_gpg(link, gpg)
        load = median_ms(lambda: load_gpg_keys([gpg.fingerprint], gpg.keyring, "rb", tmp / "p"), 5)
        ks = KeySet("rb", load_gpg_keys([gpg.fingerprint], gpg.keyring, "rb", tmp / "p"))
        rows.append(("legacy OpenPGP ed25519", median_ms(lambda: verify_document(doc, ks), runs)))
        rows.append(("(OpenPGP key load, once per process)", load))
    finally:
        gpg.cleanup()
    return rows


def published(tmp: Path, packages: int, n: int) -> tuple[Path, list, list[Artifact]]:
    """A work directory, *n* rebuilders (trees and keys) and *packages* artifacts they all attest."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    rbs = make_rebuilders(work, n)  # file:// first, then served from a child process
    arts = [Artifact(filename, digests(content)["sha256"], name=name, version="1.0-1", arch="all")
            for name, filename, content in attest_packages(rbs, packages, "pkg", "1.0-1")]
    return work, rbs, arts


def batch(tmp: Path, packages: int, n: int, latency: float, runs: int) -> tuple[float, int]:
    work, rbs, arts = published(tmp, packages, n)
    servers = RemoteServers([rb.root for rb in rbs])
    servers.latency(latency)
    try:
        urls = servers.urls
        entries = [RebuilderEntry(rb.name, url, [rb.key.public_pem]) for rb, url in zip(rbs, urls)]
        policy = load_policy(write_policy(work / "p.toml", entries, threshold={1: 1, 3: 2, 5: 3}[n],
                                          fetch={"deadline": 30.0}, log=work / "log"))
        accepted = 0

        def once() -> None:
            nonlocal accepted
            with Verifier(policy) as v:
                accepted = sum(x.accepted for x in v.verify_many(arts))
        return median_ms(once, runs) / 1000, accepted
    finally:
        servers.close()


HOSTILE_DEADLINE = 3.0
HOSTILE_MODES = {
    "none (5 honest)": {},
    "answers 0.3 s before the 3 s deadline": {"latency": HOSTILE_DEADLINE - 0.3},
    "serves 2 MiB documents, 8 bogus signatures": {"bogus": 2 * 1024 * 1024},
}


def hostile(tmp: Path, packages: int, latency: float, runs: int) -> dict[str, tuple[float, int]]:
    """Median seconds (and packages accepted) of verify_many with rb5 in each HOSTILE_MODES mode.

    The runs of the modes alternate, so that they share whatever else the
    machine is doing."""
    n = 5
    work, rbs, arts = published(tmp, packages, n)
    servers = RemoteServers([rb.root for rb in rbs])
    try:
        entries = [RebuilderEntry(rb.name, url, [rb.key.public_pem]) for rb, url in zip(rbs, servers.urls)]
        policy = load_policy(write_policy(work / "p.toml", entries, threshold=3,
                                          fetch={"deadline": HOSTILE_DEADLINE}, log=work / "log"))
        times: dict[str, list[float]] = {mode: [] for mode in HOSTILE_MODES}
        accepted: dict[str, int] = {}
        for _ in range(runs):
            for mode, how in HOSTILE_MODES.items():
                servers.latency(latency)
                servers.hostile(n - 1, how.get("latency"), how.get("bogus", 0))
                with Verifier(policy) as v:
                    started = time.perf_counter()
                    accepted[mode] = sum(x.accepted for x in v.verify_many(arts))
                    times[mode].append(time.perf_counter() - started)
        return {mode: (statistics.median(times[mode]), accepted[mode]) for mode in HOSTILE_MODES}
    finally:
        servers.close()


def cached(tmp: Path, packages: int, runs: int) -> dict[str, tuple[float, float, int]]:
    """Median (wall s, CPU s, packages accepted) of a cold and a warm evidence-cache run, alternated.

    Each run is one Verifier (as the hook and the method each make one):
    ``verify_many``, then the wait for the cache writes (what the hook
    does before it exits; nothing to wait for when warm)."""
    n = 5
    work, rbs, arts = published(tmp, packages, n)
    servers = RemoteServers([rb.root for rb in rbs])
    servers.latency(0.0)
    cache = work / "evidence-cache"
    try:
        entries = [RebuilderEntry(rb.name, url, [rb.key.public_pem]) for rb, url in zip(rbs, servers.urls)]
        policy = load_policy(write_policy(work / "p.toml", entries, threshold=3, log=work / "log",
                                          fetch={"deadline": 30.0, "cache_dir": str(cache), "cache_ttl": 3600}))
        times: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": []}
        accepted: dict[str, int] = {}

        def once(mode: str) -> None:
            if mode == "cold":
                empty_cache(cache)
            wall, cpu = time.perf_counter(), time.process_time()
            with Verifier(policy) as v:
                accepted[mode] = sum(x.accepted for x in v.verify_many(arts))
                v.transport.flush_cache(30.0)
            times[mode].append((time.perf_counter() - wall, time.process_time() - cpu))

        once("cold")  # fills the cache for the first warm run; not counted
        times["cold"].clear()
        for _ in range(runs):
            for mode in times:
                once(mode)
        return {mode: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t), accepted[mode])
                for mode, t in times.items()}
    finally:
        servers.close()


def cache_rows(tmp: Path, runs: int) -> None:
    """Section 4 of the module docstring."""
    print(f"\n## Evidence cache: verify_many, 200 packages, N = 5, 0 ms (median of {runs}, cold and warm "
          "alternated)\n")
    print("| cache | wall s | CPU s | CPU ms per document | accepted |\n|---|---|---|---|---|")
    for mode, (wall, cpu, ok) in cached(tmp, 200, runs).items():
        print(f"| {mode} | {wall:.3f} | {cpu:.3f} | {cpu * 1000 / (200 * 5):.3f} | {ok}/200 |", flush=True)


def plain(tmp: Path, runs: int, quick: bool) -> None:
    """Sections 1 and 2 of the module docstring."""
    print("## Parse + verify one document (median)\n")
    print("| format | ms |\n|---|---|")
    for name, ms in formats(tmp, 50 if quick else 300):
        print(f"| {name} | {ms:.3f} |")
    print(f"\n## Verifier.verify_many, HTTP rebuilders on 127.0.0.1 (median of {runs})\n")
    print("| packages | N | threshold | latency | seconds | accepted |\n|---|---|---|---|---|---|")
    for packages in (20, 200):
        for n in (1, 3, 5):
            for latency in (0.0, 0.05):
                secs, ok = batch(tmp, packages, n, latency, runs)
                print(f"| {packages} | {n} | {({1: 1, 3: 2, 5: 3})[n]} | {latency * 1000:.0f} ms | {secs:.3f} | "
                      f"{ok}/{packages} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument("--hostile-only", action="store_true", help="only the hostile-rebuilder rows")
    ap.add_argument("--cache-only", action="store_true", help="only the evidence-cache rows")
    args = ap.parse_args()
    runs = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="rbg-bench-") as t:
        tmp = Path(t)
        if args.cache_only:
            cache_rows(tmp, 9 if not args.quick else 3)
            return 0
        if not args.hostile_only:
            plain(tmp, runs, args.quick)
        print(f"\n## One hostile rebuilder of 5 (threshold 3, deadline {HOSTILE_DEADLINE:g} s, median of {runs}, "
              "modes alternated)\n")
        print("| packages | honest latency | hostile rebuilder | seconds | vs none | accepted |\n"
              "|---|---|---|---|---|---|")
        for latency in (0.0, 0.05):
            rows = hostile(tmp, 200, latency, runs)
            base = rows["none (5 honest)"][0]
            for mode, (secs, ok) in rows.items():
                print(f"| 200 | {latency * 1000:.0f} ms | {mode} | {secs:.3f} | {secs / base:.2f}x | {ok}/200 |",
                      flush=True)
        if not args.hostile_only:
            cache_rows(tmp, runs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak resident memory of this process (all runs): {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
