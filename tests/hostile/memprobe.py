"""Run by test_memory.py in a fresh interpreter: verify some artifacts under
a policy and print, as JSON, how much memory that took.

    python memprobe.py POLICY ARTIFACTS_JSON

``peak_mib``/``retained_mib`` are tracemalloc's peak and (after gc) current
size of Python allocations made during verification, with the Verifier still
open (as in a long apt run); ``maxrss_delta_mib`` is the growth of the
process's peak RSS over the same span.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
import tracemalloc


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    from rebuildgate.model import Artifact
    from rebuildgate.policy import load_policy
    from rebuildgate.verify import Verifier

    policy = load_policy(sys.argv[1])
    artifacts = [Artifact(**a) for a in json.loads(sys.argv[2])]
    verifier = Verifier(policy)
    gc.collect()
    rss_before = maxrss_mib()
    tracemalloc.start()
    start = time.monotonic()
    verdicts = verifier.verify_many(artifacts)
    elapsed = time.monotonic() - start
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report = {
        "peak_mib": peak / 2**20,
        "retained_mib": retained / 2**20,
        "maxrss_delta_mib": maxrss_mib() - rss_before,
        "elapsed": elapsed,
        "verdicts": [v.to_json() for v in verdicts],
    }
    verifier.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
