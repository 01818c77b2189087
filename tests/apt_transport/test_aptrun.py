"""One apt run's processes share the rebuilders they stopped asking and the documents
the first fetched (rebuildgate.apt.aptrun).

Unit tests of the run's identity and of the files the pre-prompt hook leaves,
then real apt-get: a rebuilder slower than half the deadline costs the run
its half-deadline once, in the pre-prompt hook; the method does not ask it
again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from rebuildgate.apt import aptrun
from rebuildgate.apt.aptrun import load_documents, load_trips, run_key, save_documents, save_trips
from tests.apt_transport.harness import flat_source
from tests.apt_transport.test_prompt import make_apt
from tests.apt_transport.world import World

pytestmark = pytest.mark.timeout(180)

TRIPS = {"127.0.0.1:9": "127.0.0.1:9 answered 3 requests slower than half the deadline"}


def test_the_run_is_the_apt_process_above(tmp_path) -> None:
    """Whatever runs between apt and this process (sh -c, a launcher), the key names apt."""
    apt = tmp_path / "apt-get"
    apt.write_text(f"#!/bin/sh\nsh -c '{sys.executable} -c \"from rebuildgate.apt.aptrun import run_key; "
                   f"import os; print(run_key(), os.getppid())\"'\necho $$\n")
    apt.chmod(0o755)
    out = subprocess.run([str(apt)], capture_output=True, text=True, timeout=30).stdout.split()
    key, apt_pid = out[0], out[-1]
    assert key.startswith(f"{apt_pid}-"), out
    assert run_key() is None  # pytest runs under no apt


def test_trips_round_trip_and_are_refused_when_not_roots_or_odd(tmp_path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    save_trips(cache, "42-7", TRIPS)
    assert load_trips(cache, "42-7") == TRIPS
    assert load_trips(cache, "43-7") == {}  # another run
    path = cache / "apt-run-42-7.trips"
    os.chown(path, 65534, 65534)  # written by someone else: not believed
    assert load_trips(cache, "42-7") == {}
    path.unlink()
    path.write_text("not json")
    assert load_trips(cache, "42-7") == {}
    path.unlink()
    os.mkfifo(path)
    started = time.monotonic()
    assert load_trips(cache, "42-7") == {} and time.monotonic() - started < 1
    path.unlink()
    (tmp_path / "elsewhere").write_text(json.dumps(TRIPS))
    path.symlink_to(tmp_path / "elsewhere")
    assert load_trips(cache, "42-7") == {}
    path.unlink()
    save_trips(cache, "42-7", TRIPS)
    cache.chmod(0o777)  # a directory others can write is not trusted
    assert load_trips(cache, "42-7") == {}
    cache.chmod(0o755)
    old = time.time() - 7200
    os.utime(path, (old, old))
    save_trips(cache, "44-7", {})  # the next hook sweeps runs over an hour old
    assert not path.exists()


DOCUMENTS = [("http://rb0/sources/a/1.0/metadata", b'{"signed": {}}'), ("http://rb1/x y%20", b""),
             ("http://rb1/bin", bytes(range(256)) + b"\n\n")]


def test_documents_round_trip_and_are_refused_when_not_roots_or_odd(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    assert save_documents(cache, "42-7", DOCUMENTS)
    assert load_documents(cache, "42-7") == dict(DOCUMENTS)
    assert load_documents(cache, "43-7") == {}  # another run
    path = cache / "apt-run-42-7.docs"
    whole = path.read_bytes()
    for broken in (whole[:-1], whole[:-2], whole + b"x", whole.replace(b"\n14\n", b"\n15\n", 1),
                   whole.replace(b"\n14\n", b"\n13\n", 1), whole.replace(b"\n14\n", b"\n-1\n", 1),
                   b"another format 1\n" + whole.split(b"\n", 1)[1]):
        path.write_bytes(broken)  # a truncated, padded or miscounted file is not used at all
        assert load_documents(cache, "42-7") == {}, broken[:80]
    path.write_bytes(whole)
    os.chown(path, 65534, 65534)  # written by someone else: not believed
    assert load_documents(cache, "42-7") == {}
    path.unlink()
    os.symlink(tmp_path / "elsewhere", path)
    (tmp_path / "elsewhere").write_bytes(whole)
    assert load_documents(cache, "42-7") == {}
    path.unlink()
    monkeypatch.setattr(aptrun, "MAX_DOCUMENTS_BYTES", len(whole) - 1)
    assert save_documents(cache, "42-7", DOCUMENTS)  # what fits is written, the rest left out
    assert load_documents(cache, "42-7") == dict(DOCUMENTS[:2])
    path.write_bytes(whole)
    assert load_documents(cache, "42-7") == {}  # larger than any the hook writes
    cache.chmod(0o777)
    monkeypatch.undo()
    assert load_documents(cache, "42-7") == {}  # a directory others can write is not trusted
    cache.chmod(0o755)
    assert not save_documents(cache, None, DOCUMENTS) and not save_documents(cache, "42-7", [])
    old = time.time() - 7200
    os.utime(path, (old, old))
    save_trips(cache, "44-7", {})  # the next hook sweeps runs over an hour old
    assert not path.exists()


def test_a_slow_rebuilder_costs_the_apt_run_its_half_deadline_once(world: World, apt_factory) -> None:
    pkgs = [world.package(f"pkg{i}", "1.0-1") for i in range(4)]
    repo = world.repo(pkgs)
    rbs = [world.rebuilder("rb0"), world.rebuilder("rb1"), world.rebuilder("slow")]
    for rb in rbs:
        for pkg in pkgs:
            world.attest(rb, pkg)
    slow = rbs[2]
    assert slow.server is not None
    slow.server.latency = 1.4  # more than half of the 2 s deadline, within it
    policy = world.policy(rbs, threshold=2, fetch={"cache_dir": str(world.base / "cache"), "deadline": 2.0,
                                                  "read_timeout": 2.0})
    apt = make_apt(apt_factory, policy)
    apt.sources([flat_source(repo.http)])
    assert apt.update().returncode == 0
    result = apt.run("install", "--download-only", *(p.name for p in pkgs))
    assert result.returncode == 0, result
    assert sorted(apt.downloaded()) == sorted(p.filename for p in pkgs)
    assert len(slow.server.requests) == len(pkgs)  # the hook's requests; the method asked it nothing
    method_lines = [d for d in world.decisions() if d["name"] == "pkg3"][1:]  # the hook's first, then the method's
    assert method_lines, world.decisions()
    reasons = [e["message"] for e in method_lines[0]["errors"] if e["rebuilder"] == "slow"]
    assert reasons and "found by an earlier check of this apt run" in reasons[0], method_lines[0]
