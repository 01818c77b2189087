#!/usr/bin/env python3
"""What an `apt-get install` through rebuildgate pays before any overhead of its own.

Run by hand: ``.venv/bin/python bench/floor_bench.py [--runs 15]``.

Issue #12 sets targets for the overhead of the pre-prompt hook + method
over plain http (200 packages, N = 5, rebuilders 50 ms away: under 0.4 s;
20 packages: under 0.25 s).  Some of that time is set by apt and by the
issue's own rules, whatever the code does:

* apt runs the JSON hook once per notification, each a fresh process
  (pre-prompt, package-list, statistics before the download; post after
  it), and the method once more: five interpreter starts per run;
* the pre-prompt hook and the method each import the verification library
  (securesystemslib, cryptography, asyncio, the policy and its checks);
* every document is checked twice, by the hook and again by the method
  ("documents re-verified on use, never trusted because they are cached"):
  JSON parsed, the signed part canonicalized by securesystemslib, the
  ed25519 signature verified;
* the hook's requests take at least one round trip to the rebuilders.

This measures each of those on this machine, side by side in one run
(medians), for the development venv's interpreter (what ``bench/apt_bench.py``
runs) and for ``/usr/bin/python3 -I`` (what the .deb's launchers run, with
the same library on the path), and prints the sum against the targets.  A
sum close to a target leaves the code nothing to spend.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SYSTEM_PYTHON = "/usr/bin/python3"
LATENCY = 0.05
#: (packages, target overhead in seconds) from issue #12.
TARGETS = ((20, 0.25), (200, 0.4))
REBUILDERS = 5
#: The modules each process needs before it can judge anything.
HOOK_IDLE = "import rebuildgate.apt.prompt_entry"
HOOK_JUDGE = "import rebuildgate.apt.prompt_entry, rebuildgate.apt.prompt, rebuildgate.apt.engine, apt_pkg"
METHOD = "import rebuildgate.apt.entry, rebuildgate.apt.method, rebuildgate.apt.engine, rebuildgate.apt.gate"
#: What the issue itself prescribes to either process, whoever writes the rest: the
#: project's asyncio client (with TLS), securesystemslib's signature checks and
#: canonical JSON, cryptography's ed25519, and python-apt in the hook.
DEPENDENCIES = ("import asyncio, ssl, json, securesystemslib.signer, securesystemslib.formats, "
                "cryptography.hazmat.primitives.asymmetric.ed25519")


def package_tree(base: Path) -> Path:
    """rebuildgate laid out as the .deb installs it (``rebuildgate``, ``rebuildgate.apt``), as symlinks."""
    top = base / "rebuildgate"
    top.mkdir()
    for item in (ROOT / "common").iterdir():
        if item.suffix == ".py":
            (top / item.name).symlink_to(item)
    (top / "apt").symlink_to(ROOT / "apt_transport")
    return base


def median_run(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interpreters(lib: Path) -> dict[str, list[str]]:
    """How each kind of install starts Python: the venv's console scripts, the .deb's launchers."""
    venv_site = sysconfig.get_paths()["purelib"]
    path = f"import sys; sys.path[:0] = [{str(lib)!r}, {venv_site!r}]; "
    return {"venv": [sys.executable, "-c"], "deb": [SYSTEM_PYTHON, "-I", "-c", path]}


def start_costs(lib: Path, runs: int) -> dict[tuple[str, str], float]:
    """Median seconds of each process start, per interpreter kind, alternated."""
    out: dict[tuple[str, str], list[float]] = {}
    what = {"bare": "pass", "hook, nothing to judge": HOOK_IDLE, "hook, pre-prompt": HOOK_JUDGE, "method": METHOD,
            "prescribed imports (hook)": DEPENDENCIES + ", apt_pkg", "prescribed imports (method)": DEPENDENCIES}
    for _ in range(runs):
        for kind, argv in interpreters(lib).items():
            for label, code in what.items():
                prefix = argv[-1] if kind == "deb" else ""
                cmd = argv[:-1] + [prefix + code] if kind == "deb" else argv + [code]
                out.setdefault((kind, label), []).append(median_run(cmd, 1))
    return {k: statistics.median(v) for k, v in out.items()}


def check_cost(documents: int = 1000) -> float:
    """Seconds per document of the checks every correct verifier makes: parse, canonicalize, verify."""
    from securesystemslib.formats import encode_canonical
    from securesystemslib.signer import CryptoSigner, Signature, SSlibKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.support.links import make_link, sign_legacy

    signer = CryptoSigner(Ed25519PrivateKey.generate())
    key: SSlibKey = signer.public_key  # type: ignore[assignment]
    bodies = [sign_legacy(make_link({f"pkg{i}_1.0-1_all.deb": b"build %d" % i}), signer) for i in range(documents)]
    started = time.process_time()
    for body in bodies:
        doc = json.loads(body)
        data = encode_canonical(doc["signed"]).encode()
        sig = doc["signatures"][0]
        key.verify_signature(Signature(sig["keyid"], sig["sig"]), data)
    return (time.process_time() - started) / documents


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per cell (median)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="rbg-floor-"))
    try:
        lib = package_tree(base)
        starts = start_costs(lib, args.runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    per_doc = check_cost()
    cores = os.cpu_count() or 1

    print(f"\nProcess starts, median of {args.runs} (runs alternated): seconds until the modules are imported")
    print("| process | venv (bench/apt_bench.py) | /usr/bin/python3 -I (the .deb) |\n|---|---:|---:|")
    for label in ("bare", "hook, nothing to judge", "hook, pre-prompt", "method", "prescribed imports (hook)",
                  "prescribed imports (method)"):
        print(f"| {label} | {starts[('venv', label)]:.3f} | {starts[('deb', label)]:.3f} |")
    print(f"\nChecks: {per_doc * 1e6:.0f} us of CPU per document (json.loads, securesystemslib's "
          f"encode_canonical, SSlibKey.verify_signature; ed25519), {cores} CPU(s)")

    print(f"\nThe floor of hook + method over plain http (N = {REBUILDERS}, {LATENCY * 1000:.0f} ms): "
          "3 idle hook runs + the pre-prompt run + the method's start, each document checked twice "
          "(spread over every CPU), one round trip; with rebuildgate's imports, and with only the "
          "prescribed ones (a library of its own that imports in no time)")
    print("| packages | kind | imports | starts | checks | round trip | floor | target |\n"
          "|---:|---|---|---:|---:|---:|---:|---:|")
    for packages, target in TARGETS:
        checks = 2 * packages * REBUILDERS * per_doc / cores
        for kind in ("venv", "deb"):
            for imports, hook, method in (("rebuildgate", "hook, pre-prompt", "method"),
                                          ("prescribed only", "prescribed imports (hook)",
                                           "prescribed imports (method)")):
                started = 3 * starts[(kind, "hook, nothing to judge")] + starts[(kind, hook)] + starts[(kind, method)]
                floor = started + checks + LATENCY
                print(f"| {packages} | {kind} | {imports} | {started:.3f} | {checks:.3f} | {LATENCY:.3f} | "
                      f"**{floor:.3f}** | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
