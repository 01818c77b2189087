"""Memory stays bounded whatever a rebuilder sends: measured in a fresh
interpreter (tests/hostile/memprobe.py) with tracemalloc and the process's
peak RSS, while a rebuilder streams a gigabyte, or while many packages get
maximum-size garbage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rebuildgate.policy import FetchSettings
from tests.support.links import digests
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders
from tests.support.server import Fault

from .helpers import PYTHON, REPO

PROBE = Path(__file__).with_name("memprobe.py")
GIB = 1 << 30
BOUND_MIB = 64  # far below the 1 GiB on offer; max_bytes is the default 2 MiB
FETCH = {"deadline": 20.0, "read_timeout": 10.0, "connect_timeout": 2.0}  # the cap, not the clock, must stop it


def probe(policy: Path, artifacts: list[dict]) -> dict:
    r = subprocess.run([PYTHON, str(PROBE), str(policy), json.dumps(artifacts)], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def art(i: int = 0) -> dict:
    content = f"package {i}".encode()
    d = digests(content)
    return {"filename": f"p{i}_1.0_all.deb", "sha256": d["sha256"], "sha512": d["sha512"], "name": f"p{i}",
            "version": "1.0", "arch": "all"}


@pytest.mark.parametrize("fault", [Fault.oversized(GIB), Fault.endless()], ids=["1GiB-with-length", "endless-chunked"])
def test_a_gigabyte_body_costs_little_memory(tmp_path, rebuilder_server, fault) -> None:
    (rb,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    rb.server.fault = fault
    policy = write_policy(tmp_path / "policy.toml", [rb.entry()], fetch=FETCH)
    out = probe(policy, [art()])
    (verdict,) = out["verdicts"]
    assert verdict["verdict"] == "blocked" and [e["kind"] for e in verdict["errors"]] == ["fetch-error"]
    assert "max_bytes" in verdict["errors"][0]["message"]
    assert out["peak_mib"] < BOUND_MIB, out
    assert out["maxrss_delta_mib"] < BOUND_MIB, out


def test_a_gigabyte_evidence_file_costs_little_memory(tmp_path) -> None:
    (rb,) = make_rebuilders(tmp_path, 1)
    metadata = rb.root / "sources" / "p0" / "1.0" / "metadata"
    metadata.parent.mkdir(parents=True)
    with open(metadata, "wb") as f:
        f.truncate(GIB)  # sparse: costs no disk
    policy = write_policy(tmp_path / "policy.toml", [rb.entry()], fetch=FETCH)
    out = probe(policy, [art()])
    (verdict,) = out["verdicts"]
    assert verdict["verdict"] == "blocked" and "max_bytes" in verdict["errors"][0]["message"], verdict
    assert out["peak_mib"] < BOUND_MIB and out["maxrss_delta_mib"] < BOUND_MIB, out


def test_maximum_size_garbage_for_many_packages_is_not_kept(tmp_path, rebuilder_server) -> None:
    """48 packages, each answered with 2 MiB of junk (just under max_bytes,
    so each is read in full and found malformed): once the verdicts are out,
    at most the Transport's small memo of recent bodies (8 MiB) of those
    96 MiB may stay referenced while the Verifier lives on (an apt run keeps
    one Verifier for the whole transaction)."""
    (rb,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    rb.server.fault = Fault.oversized(FetchSettings().max_bytes - 1024)
    policy = write_policy(tmp_path / "policy.toml", [rb.entry()], fetch={**FETCH, "max_workers": 4})
    out = probe(policy, [art(i) for i in range(48)])
    assert all(v["verdict"] == "blocked" and v["errors"][0]["kind"] == "malformed" for v in out["verdicts"])
    assert out["retained_mib"] < 16, f"{out['retained_mib']:.0f} MiB still referenced after the verdicts"
    assert out["peak_mib"] < BOUND_MIB, out
