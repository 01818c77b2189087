"""Hostile rebuilders, end to end through the Verifier (and the CLI where the
process itself must end): whatever one rebuilder does costs at most its own
vote, within the configured deadline, and never lets a package through.

Transport-level versions of some faults are in tests/common/test_fetch.py;
these tests put the same faults behind a real policy, next to an honest
rebuilder, and check what the verdict says and when it arrives.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rebuildgate.model import Artifact
from rebuildgate.policy import FetchSettings, load_policy
from rebuildgate.verify import Verifier

from tests.support.links import digests, make_link, rebuilderd_public_pem, sign_legacy_gpg
from tests.support.policy import RebuilderEntry, write_policy
from tests.support.rebuilders import FakeRebuilder, attest_packages, make_rebuilders
from tests.support.server import Fault, publish_package_rebuilder

from .helpers import canned, cli, endless_continue, kinds, slow_headers

CONTENT = b"the honest package"
EVIL = b"the backdoored package"
FILE = "hello_1.0-1_all.deb"
DEADLINE = 1.5
# read_timeout above the deadline: what ends a slow answer must be the deadline.
FETCH = {"deadline": DEADLINE, "read_timeout": 2.0, "connect_timeout": 1.0}
SLACK = 2.0  # generous: other test suites run on this machine at the same time


def artifact(content: bytes = CONTENT, filename: str = FILE, name: str = "hello", version: str = "1.0-1",
             **kw) -> Artifact:
    d = digests(content)
    fields = dict(source=name, arch="all")
    fields.update(kw)
    return Artifact(filename, d["sha256"], sha512=d["sha512"], name=name, version=version, **fields)


def verify(policy, *arts: Artifact, limit: float = DEADLINE + SLACK):
    """verify_many in a helper thread, so that a test exposing a hang fails
    after *limit* seconds instead of hanging (the fixtures' teardown then
    releases whatever is stuck)."""
    box: dict = {}

    def run() -> None:
        try:
            with Verifier(policy) as v:
                box["verdicts"] = v.verify_many(list(arts))
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = e
        box["end"] = time.monotonic()

    start = time.monotonic()
    thread = threading.Thread(target=run, name="hostile-verify", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"no verdicts {limit:g}s after starting {len(arts)} package(s) (deadline {DEADLINE:g}s)")
    if "error" in box:
        raise box["error"]
    return box["verdicts"], box["end"] - start


def metadata(rb: FakeRebuilder, source: str = "hello", version: str = "1.0-1") -> Path:
    return rb.root / "sources" / source / version / "metadata"


# ---------------------------------------------------------------------------
# One hostile rebuilder next to an honest one

_HUGE: dict[str, bytes] = {}


def huge_document() -> bytes:
    """~1.9 MiB of well-formed metablock (20 000 products), just under the
    default max_bytes, with a signature by nobody."""
    if "doc" not in _HUGE:
        products = {f"f{i}_1.0_all.deb": {"sha256": "a" * 64} for i in range(20000)}
        _HUGE["doc"] = json.dumps({"signed": {"_type": "link", "name": "rebuild", "products": products},
                                   "signatures": [{"keyid": "ab" * 32, "sig": "00" * 64}]}, separators=(",", ":")).encode()
        assert len(_HUGE["doc"]) < FetchSettings().max_bytes
    return _HUGE["doc"]


def _http(fault_of):
    def setup(rb1, rb2, ctx):
        rb1.server.fault = fault_of(rb1, ctx)
        return rb1.entry()
    return setup


def _raw(behaviour_of):
    def setup(rb1, rb2, ctx):
        server = ctx["raw_server"](behaviour_of(rb1))
        return RebuilderEntry("rb1", server.url, [rb1.key.public_pem])
    return setup


def _redirect_other_host(rb1, ctx):
    other = ctx["rebuilder_server"]()  # holds a copy of rb1's valid evidence
    publish_package_rebuilder(other.root, "hello", "1.0-1", metadata(rb1).read_bytes())
    ctx["watch"] = other
    return Fault.redirect(f"{other.url}/sources/hello/1.0-1/metadata")


def _gzip_response(rb1) -> bytes:
    body = gzip.compress(metadata(rb1).read_bytes())
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


def _fifo(rb1, rb2, ctx):
    path = metadata(rb1)
    path.unlink()
    os.mkfifo(path)
    ctx["fifos"].append(path)
    return RebuilderEntry("rb1", f"file://{rb1.root}", [rb1.key.public_pem])


def _other_package(rb1, rb2, ctx):
    # Validly signed, right URL, exactly our bytes, but for another file name.
    rb1.publish("hello", "1.0-1", {"other_1.0-1_all.deb": CONTENT})
    return rb1.entry()


FETCH_ERROR = {"fetch-error"}
HOSTILE = {
    "never-answers": (_http(lambda rb, ctx: Fault.hang()), FETCH_ERROR),
    "one-byte-a-second": (_http(lambda rb, ctx: Fault.trickle(1, total=1000)), FETCH_ERROR),
    "endless-body": (_http(lambda rb, ctx: Fault.endless()), FETCH_ERROR),
    "multi-gigabyte-body": (_http(lambda rb, ctx: Fault.oversized(4 << 30)), FETCH_ERROR),
    "deeply-nested-json": (_http(lambda rb, ctx: Fault.body(b'{"signed":' * 200000)), {"malformed"}),
    "deeply-nested-arrays": (_http(lambda rb, ctx: Fault.body(b"[" * 400000 + b"]" * 400000)), {"malformed"}),
    "huge-json": (_http(lambda rb, ctx: Fault.body(huge_document())), {"unknown-key"}),
    "invalid-utf8": (_http(lambda rb, ctx: Fault.body(
        b'{"signed": {"_type": "link", "name": "\xff\xfe\xc0"}, "signatures": [{"keyid": "a", "sig": "00"}]}')),
        {"malformed"}),
    "redirect-to-another-host": (_http(_redirect_other_host), FETCH_ERROR),
    "redirect-to-file": (_http(lambda rb, ctx: Fault.redirect(f"file://{metadata(rb)}")), FETCH_ERROR),
    "redirect-loop": (_http(lambda rb, ctx: Fault.redirect("/sources/hello/1.0-1/metadata")), FETCH_ERROR),
    "redirect-307-to-https": (_http(lambda rb, ctx: Fault.redirect(
        rb.server.url.replace("http:", "https:") + "/x", 307)), FETCH_ERROR),
    "http-500": (_http(lambda rb, ctx: Fault.status(500)), FETCH_ERROR),
    "http-206-partial": (_http(lambda rb, ctx: Fault.body(b"{", code=206)), FETCH_ERROR),
    "gzip-encoded-valid-link": (_raw(lambda rb: canned(_gzip_response(rb))), {"fetch-error", "malformed"}),
    "headers-one-byte-at-a-time": (_raw(lambda rb: slow_headers), FETCH_ERROR),
    "endless-100-continue": (_raw(lambda rb: endless_continue), FETCH_ERROR),
    "file-evidence-is-a-named-pipe": (_fifo, FETCH_ERROR),
    "link-for-another-package": (_other_package, {"missing"}),
}


@pytest.fixture
def ctx(rebuilder_server, raw_server, fifos):
    return {"rebuilder_server": rebuilder_server, "raw_server": raw_server, "fifos": fifos}


@pytest.mark.parametrize("attack", list(HOSTILE))
def test_hostile_rebuilder_costs_only_its_vote_within_the_deadline(tmp_path, rebuilder_server, ctx, attack) -> None:
    setup, expected = HOSTILE[attack]
    rb1, rb2 = make_rebuilders(tmp_path, 2, rebuilder_server)
    for rb in (rb1, rb2):
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    entry = setup(rb1, rb2, ctx)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [entry, rb2.entry()], threshold=1, fetch=FETCH))
    (v,), elapsed = verify(policy, artifact())
    assert elapsed < DEADLINE + SLACK, f"{attack}: verdict after {elapsed:.1f}s"
    assert v.accepted and [x.rebuilder for x in v.votes] == ["rb2"], v.reason
    got = kinds(v).get("rb1", set())
    # "timeout" would mean the fetch itself never ended: the verdict gave up
    # waiting, but a worker thread is still held by the attacker.
    assert got and got <= expected, f"{attack}: rb1 reported {got}, expected {expected}: {v.reason}"
    assert "\n" not in v.summary()
    if "watch" in ctx:
        assert ctx["watch"].requests == [], "a redirect to another host was followed"


def test_every_hostile_rebuilder_at_once(tmp_path, rebuilder_server) -> None:
    """Eight differently hostile rebuilders and one honest one, one package:
    the honest vote is all that counts, and it comes within the deadline."""
    faults = [Fault.hang(), Fault.trickle(1, total=1000), Fault.endless(), Fault.oversized(1 << 30),
              Fault.body(b"[" * 100000), Fault.body(b"\xff\xfe\x00"), Fault.redirect("/sources/hello/1.0-1/metadata"),
              Fault.status(503)]
    rbs = make_rebuilders(tmp_path, len(faults) + 1, rebuilder_server)
    for rb in rbs:
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    for rb, fault in zip(rbs, faults):
        rb.server.fault = fault
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=1,
                                      fetch=FETCH))
    (v,), elapsed = verify(policy, artifact())
    assert elapsed < DEADLINE + SLACK
    assert v.accepted and [x.rebuilder for x in v.votes] == [rbs[-1].name], v.reason
    assert set(kinds(v)) == {rb.name for rb in rbs[:-1]}
    assert all(k in ({"fetch-error"}, {"malformed"}) for k in kinds(v).values()), kinds(v)


# ---------------------------------------------------------------------------
# Storms: many packages x many rebuilders, all failing


STORMS = {
    "500": lambda server: setattr(server, "fault", Fault.status(500)),
    "hang": lambda server: setattr(server, "fault", Fault.hang()),
}


@pytest.mark.parametrize("storm", list(STORMS))
def test_failure_storm_batch_ends_within_the_deadline(tmp_path, rebuilder_server, storm) -> None:
    rbs = make_rebuilders(tmp_path, 4, rebuilder_server)
    for rb in rbs:
        STORMS[storm](rb.server)
    # More requests than workers, so that queueing is part of what is tested.
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=2,
                                      fetch={**FETCH, "max_workers": 8}))
    arts = [artifact(f"pkg {i}".encode(), f"p{i}_1.0_all.deb", f"p{i}", "1.0") for i in range(25)]
    verdicts, elapsed = verify(policy, *arts)
    assert elapsed < DEADLINE + SLACK, f"25 packages x 4 rebuilders ({storm}) took {elapsed:.1f}s"
    assert [v.artifact for v in verdicts] == arts
    for v in verdicts:
        assert not v.allowed and v.vote_count == 0
        assert kinds(v) == {rb.name: {"fetch-error"} for rb in rbs}, v.reason


def test_slow_header_storm_batch_ends_within_the_deadline(tmp_path, raw_server) -> None:
    """The same with rebuilders whose every read is quick but whose headers
    never end: only a deadline on the whole request ends them."""
    keys = make_rebuilders(tmp_path, 3)
    entries = [RebuilderEntry(rb.name, raw_server(slow_headers).url, [rb.key.public_pem]) for rb in keys]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=1,
                                      fetch={**FETCH, "max_workers": 8}))
    arts = [artifact(f"pkg {i}".encode(), f"p{i}_1.0_all.deb", f"p{i}", "1.0") for i in range(6)]
    verdicts, elapsed = verify(policy, *arts)
    assert all(not v.allowed for v in verdicts)
    assert elapsed < DEADLINE + SLACK, f"6 packages x 3 slow-header rebuilders took {elapsed:.1f}s"


def test_hanging_rebuilders_do_not_starve_the_honest_one(tmp_path, rebuilder_server) -> None:
    """Two rebuilders that never answer, one honest, more packages than
    worker threads: every package still gets the honest vote (a dead
    rebuilder costs its own votes, not everybody's)."""
    rbs = make_rebuilders(tmp_path, 3, rebuilder_server)
    arts = []
    for i in range(12):
        content = f"pkg {i}".encode()
        rbs[2].publish(f"p{i}", "1.0", {f"p{i}_1.0_all.deb": content})
        arts.append(artifact(content, f"p{i}_1.0_all.deb", f"p{i}", "1.0"))
    rbs[0].server.fault = rbs[1].server.fault = Fault.hang()
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb.entry() for rb in rbs], threshold=1,
                                      fetch={**FETCH, "max_workers": 4}))
    verdicts, elapsed = verify(policy, *arts)
    assert elapsed < DEADLINE + SLACK
    blocked = [v.artifact.name for v in verdicts if not v.accepted]
    assert not blocked, f"honest votes lost for {blocked}: {verdicts[-1].reason}"


# ---------------------------------------------------------------------------
# The process must end too (a stuck worker thread keeps Python from exiting)


@pytest.mark.parametrize("attack", ["headers-one-byte-at-a-time", "file-evidence-is-a-named-pipe"])
def test_cli_exits_within_the_deadline(tmp_path, rebuilder_server, ctx, attack) -> None:
    setup, _ = HOSTILE[attack]
    rb1, rb2 = make_rebuilders(tmp_path, 2, rebuilder_server)
    for rb in (rb1, rb2):
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    entry = setup(rb1, rb2, ctx)
    policy = write_policy(tmp_path / "policy.toml", [entry, rb2.entry()], threshold=1, fetch=FETCH)
    start = time.monotonic()
    try:
        r = cli("verify", "--policy", policy, "--artifact", FILE, "--sha256", hashlib.sha256(CONTENT).hexdigest(),
                timeout=DEADLINE + 4)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rebuildgate verify still running {DEADLINE + 4:g}s after start (deadline {DEADLINE:g}s)")
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    assert elapsed < DEADLINE + SLACK + 1.0, f"rebuildgate verify took {elapsed:.1f}s with a {DEADLINE:g}s deadline"


# ---------------------------------------------------------------------------
# Sybil: one party under two names never counts twice (end to end)


@pytest.mark.parametrize("how", ["same-file", "copied-file", "rebuilderd-pem", "dsse-and-legacy"])
def test_same_key_under_two_rebuilder_names_counts_once(tmp_path, rebuilder_server, how) -> None:
    rb1, rb2, rb3 = make_rebuilders(tmp_path, 3, rebuilder_server)
    key_file = rb1.key.public_pem
    if how == "copied-file":
        key_file = tmp_path / "copy-of-rb1.pem"
        key_file.write_bytes(rb1.key.public_pem.read_bytes())
    elif how == "rebuilderd-pem":  # the same ed25519 key, DER with a NULL parameter
        key_file = rebuilderd_public_pem(rb1.key, tmp_path / "rb1-as-rebuilderd.pem")
    rb1.publish("hello", "1.0-1", {FILE: CONTENT})
    rb2.publish("hello", "1.0-1", {FILE: CONTENT}, fmt="dsse" if how == "dsse-and-legacy" else "legacy",
                key=rb1.key)
    entries = [rb1.entry(), RebuilderEntry("rb2", rb2.url, [key_file]), rb3.entry()]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=2))
    (v,), _ = verify(policy, artifact())
    assert {x.rebuilder for x in v.votes} == {"rb1", "rb2"}  # both links verified ...
    assert v.vote_count == 1 and not v.accepted, v.reason  # ... and count once
    rb3.publish("hello", "1.0-1", {FILE: CONTENT})  # a really independent second vote
    (v,), _ = verify(policy, artifact())
    assert v.vote_count == 2 and v.accepted, v.reason


def test_shared_key_also_merges_conflicts(tmp_path, rebuilder_server) -> None:
    """Two names with one key that both dissent count as one conflict."""
    rb1, rb2, rb3 = make_rebuilders(tmp_path, 3, rebuilder_server)
    for rb in (rb1, rb2):
        rb.publish("hello", "1.0-1", {FILE: EVIL}, key=rb1.key)
    rb3.publish("hello", "1.0-1", {FILE: CONTENT})
    entries = [rb1.entry(), RebuilderEntry("rb2", rb2.url, [rb1.key.public_pem]), rb3.entry()]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=1, max_conflicts=1))
    (v,), _ = verify(policy, artifact())
    assert v.conflict_count == 1 and v.accepted, v.reason


def test_two_keys_of_one_operator_count_once(tmp_path, rebuilder_server) -> None:
    rb1, rb2, rb3 = make_rebuilders(tmp_path, 3, rebuilder_server)
    for rb in (rb1, rb2):
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    entries = [rb1.entry(operator="org-a"), rb2.entry(operator="org-a"), rb3.entry()]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=2))
    (v,), _ = verify(policy, artifact())
    assert v.vote_count == 1 and not v.accepted, v.reason
    rb3.publish("hello", "1.0-1", {FILE: CONTENT})
    (v,), _ = verify(policy, artifact())
    assert v.vote_count == 2 and v.accepted, v.reason


def test_one_key_shared_across_operators_still_counts_once(tmp_path, rebuilder_server) -> None:
    """rb2 claims to be another operator but signs with rb1's key (which the
    admin also gave it): the key joins them."""
    rb1, rb2, rb3 = make_rebuilders(tmp_path, 3, rebuilder_server)
    rb1.publish("hello", "1.0-1", {FILE: CONTENT})
    rb2.publish("hello", "1.0-1", {FILE: CONTENT}, key=rb1.key)
    entries = [rb1.entry(operator="org-a"),
               RebuilderEntry("rb2", rb2.url, [rb2.key.public_pem, rb1.key.public_pem], extra={"operator": "org-b"}),
               rb3.entry(operator="org-c")]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=2))
    (v,), _ = verify(policy, artifact())
    assert v.vote_count == 1 and not v.accepted, v.reason


def test_same_openpgp_key_in_two_keyrings_counts_once(tmp_path, rebuilder_server, gpg_key) -> None:
    rb1, rb2, rb3 = make_rebuilders(tmp_path, 3, rebuilder_server)
    doc = sign_legacy_gpg(make_link({FILE: CONTENT}), gpg_key)
    for rb in (rb1, rb2):
        publish_package_rebuilder(rb.root, "hello", "1.0-1", doc)
    gpg = lambda keyring: {"gpg_keys": [gpg_key.fingerprint], "gpg_keyring": str(keyring)}  # noqa: E731
    entries = [RebuilderEntry("rb1", rb1.url, extra=gpg(gpg_key.keyring)),
               RebuilderEntry("rb2", rb2.url, extra=gpg(gpg_key.public_asc)), rb3.entry()]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=2))
    (v,), _ = verify(policy, artifact())
    assert {x.rebuilder for x in v.votes} == {"rb1", "rb2"}
    assert v.vote_count == 1 and not v.accepted, v.reason


# ---------------------------------------------------------------------------
# Downgrade: weak digests never vote (end to end)


@pytest.mark.parametrize("weak", [
    {"md5": hashlib.md5(CONTENT).hexdigest()},
    {"sha1": hashlib.sha1(CONTENT).hexdigest()},
    {"md5": hashlib.md5(CONTENT).hexdigest(), "sha1": hashlib.sha1(CONTENT).hexdigest()},
    {"sha224": hashlib.sha224(CONTENT).hexdigest(), "sha-256": hashlib.sha256(CONTENT).hexdigest()},
])
@pytest.mark.parametrize("fmt", ["legacy", "dsse"])
def test_link_with_only_weak_digests_never_votes(tmp_path, rebuilder_server, weak, fmt) -> None:
    (rb1,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    rb1.publish("hello", "1.0-1", {FILE: weak}, fmt=fmt)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb1.entry()], threshold=1))
    (v,), _ = verify(policy, artifact())
    assert not v.accepted and not v.allowed and v.vote_count == 0, v.reason
    assert kinds(v) == {"rb1": {"weak-digest"}}, v.reason


def test_weak_digest_cannot_outvote_a_strong_mismatch(tmp_path, rebuilder_server) -> None:
    """md5 and sha1 of the real file, sha256 of another: a conflict."""
    (rb1,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    forged = {"md5": hashlib.md5(CONTENT).hexdigest(), "sha1": hashlib.sha1(CONTENT).hexdigest(),
              "sha256": hashlib.sha256(EVIL).hexdigest()}
    rb1.publish("hello", "1.0-1", {FILE: forged})
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb1.entry()], threshold=1, max_conflicts=0))
    (v,), _ = verify(policy, artifact())
    assert not v.accepted and v.vote_count == 0 and v.conflict_count == 1, v.reason


# ---------------------------------------------------------------------------
# The evidence cache: whatever sits in its directory is a miss, at once


def _cache_fifo(path: Path, ctx) -> None:
    os.mkfifo(path)
    ctx["fifos"].append(path)


def _cache_symlink_to_valid_entry(path: Path, ctx) -> None:
    from rebuildgate.cache import DocumentCache

    elsewhere = DocumentCache(ctx["tmp_path"] / "elsewhere", ttl=3600, max_bytes=FetchSettings().max_bytes)
    elsewhere.put(ctx["url"], ctx["doc"])  # a well-formed, fresh entry for this very URL
    path.symlink_to(elsewhere._path(ctx["url"]))


def _cache_huge_sparse_file(path: Path, ctx) -> None:
    with open(path, "wb") as f:
        f.write(ctx["url"].encode() + b"\n")
        f.truncate(8 << 30)


CACHE_PLANTS = {
    "fifo": _cache_fifo,
    "symlink-to-a-valid-entry-elsewhere": _cache_symlink_to_valid_entry,
    "symlink-to-dev-zero": lambda path, ctx: path.symlink_to("/dev/zero"),
    "directory": lambda path, ctx: path.mkdir(),
    "huge-sparse-file": _cache_huge_sparse_file,
}


@pytest.mark.parametrize("plant", list(CACHE_PLANTS))
def test_anything_planted_in_the_cache_is_a_miss_and_the_rebuilder_is_asked(tmp_path, rebuilder_server, ctx,
                                                                           plant) -> None:
    """A FIFO in the cache directory used to freeze the fetcher's loop (the
    cache was read there, with a blocking open): every verdict then waited
    for PendingVerdict's 600 s limit.  Now anything but a regular file is a
    miss, read off the loop, and both rebuilders are fetched as usual."""
    from rebuildgate.cache import DocumentCache

    rb1, rb2 = make_rebuilders(tmp_path, 2, rebuilder_server)
    for rb in (rb1, rb2):
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o755)
    url = f"{rb1.url}/sources/hello/1.0-1/metadata"
    ctx.update(tmp_path=tmp_path, url=url, doc=metadata(rb1).read_bytes())
    CACHE_PLANTS[plant](DocumentCache(cache_dir, 3600, FetchSettings().max_bytes)._path(url), ctx)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb1.entry(), rb2.entry()], threshold=2,
                                      fetch={**FETCH, "cache_dir": str(cache_dir), "cache_ttl": 3600}))
    (v,), elapsed = verify(policy, artifact())
    assert elapsed < DEADLINE + SLACK, f"{plant}: verdict after {elapsed:.1f}s"
    assert v.accepted and {x.rebuilder for x in v.votes} == {"rb1", "rb2"}, v.reason
    assert rb1.server.requests == ["/sources/hello/1.0-1/metadata"], f"{plant}: the cache entry was used"


def test_a_cache_directory_others_can_write_is_ignored(tmp_path, rebuilder_server, caplog, monkeypatch) -> None:
    """Documents planted in a group-writable cache directory are never read
    (the rebuilder is asked instead), and the run says so once."""
    import logging

    from rebuildgate import cache as cache_module
    from rebuildgate.cache import DocumentCache

    monkeypatch.setattr(cache_module, "_warned", set())
    (rb1,) = make_rebuilders(tmp_path, 1, rebuilder_server)
    rb1.publish("hello", "1.0-1", {FILE: CONTENT})
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    url = f"{rb1.url}/sources/hello/1.0-1/metadata"
    DocumentCache(cache_dir, 3600, FetchSettings().max_bytes).put(url, metadata(rb1).read_bytes())
    cache_dir.chmod(0o775)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb1.entry()], threshold=1,
                                      fetch={**FETCH, "cache_dir": str(cache_dir), "cache_ttl": 3600}))
    caplog.set_level(logging.WARNING, logger="rebuildgate")
    for _ in range(2):
        (v,), _elapsed = verify(policy, artifact())
        assert v.accepted, v.reason
    assert rb1.server.requests == ["/sources/hello/1.0-1/metadata"] * 2
    warnings = [r.getMessage() for r in caplog.records if "evidence cache" in r.getMessage()]
    assert len(warnings) == 1 and "writable by its group or by others" in warnings[0], warnings


# ---------------------------------------------------------------------------
# Time and CPU budgets: a rebuilder that is never wrong, only costly


def _packages(rbs, count: int) -> list[Artifact]:
    return [artifact(content, filename, name, "1.0") for name, filename, content in attest_packages(rbs, count)]


def test_a_rebuilder_answering_just_before_the_deadline_stops_being_asked(tmp_path, rebuilder_server) -> None:
    """rb1 answers every request 0.3 s before the deadline: never a timeout,
    but a deadline per package (apt hands over ten packages at a time, here
    one job runs at a time).  After three answers slower than half the
    deadline it is not asked again: rb1's server sees three requests, and
    the rest of its packages say why it gave no vote."""
    deadline = 1.0
    rb1, rb2 = make_rebuilders(tmp_path, 2, rebuilder_server)
    arts = _packages((rb1, rb2), 8)
    rb1.server.latency = deadline - 0.3
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb1.entry(), rb2.entry()], threshold=1,
                                      fetch={**FETCH, "deadline": deadline, "max_workers": 1}))
    verdicts, elapsed = verify(policy, *arts, limit=4 * deadline + SLACK)
    assert all(v.accepted for v in verdicts), [v.reason for v in verdicts if not v.accepted]
    assert len(rb1.server.requests) == 3, rb1.server.requests
    assert [x.rebuilder for x in verdicts[0].votes] == ["rb1", "rb2"]  # slow, but a vote while it counted
    for v in verdicts[2:]:
        assert kinds(v) == {"rb1": {"slow"}}, v.reason
    assert "answered 3 requests slower than half the deadline (0.5 s); not asked again in this run" in \
        verdicts[-1].reason


def test_a_rebuilder_sending_costly_garbage_stops_being_checked_and_asked(tmp_path, rebuilder_server,
                                                                          monkeypatch) -> None:
    """rb1 answers at once with documents that do not verify and (here, by
    lowering the bar) count as costly to check.  After three of them its
    documents are neither checked nor fetched again in this run."""
    from rebuildgate import budget

    monkeypatch.setattr(budget, "COSTLY_CPU", 0.0)
    rb1, rb2 = make_rebuilders(tmp_path, 2, rebuilder_server)
    arts = _packages((rb1, rb2), 8)
    bogus = json.dumps({"signed": {"_type": "link", "name": "rebuild", "products": {}},
                        "signatures": [{"keyid": f"{i:064x}", "sig": "00" * 64} for i in range(8)]}).encode()
    rb1.server.fault = Fault.body(bogus)
    policy = load_policy(write_policy(tmp_path / "policy.toml", [rb1.entry(), rb2.entry()], threshold=1,
                                      fetch={**FETCH, "max_workers": 1}))
    verdicts, _elapsed = verify(policy, *arts)
    assert all(v.accepted and [x.rebuilder for x in v.votes] == ["rb2"] for v in verdicts)
    assert len(rb1.server.requests) == 3, rb1.server.requests
    assert [kinds(v)["rb1"] for v in verdicts] == [{"unknown-key"}] * 3 + [{"slow"}] * 5
    assert "did not verify; not asked again in this run" in verdicts[-1].reason


def test_costly_garbage_from_a_shared_host_costs_only_its_senders_vote(tmp_path, rebuilder_server,
                                                                        monkeypatch) -> None:
    """Two rebuilders on one host (a static web host): rb1's costly garbage must not stop rb2's
    documents from being checked (review finding: the CPU budget was the host's)."""
    from rebuildgate import budget

    monkeypatch.setattr(budget, "COSTLY_CPU", 0.0)
    rb1, rb2 = make_rebuilders(tmp_path, 2)
    shared = rebuilder_server(tmp_path)  # serves both trees, under one host
    arts = _packages((rb1, rb2), 6)
    for rb in (rb1, rb2):
        rb.server = None
    bogus = json.dumps({"signed": {"_type": "link", "name": "rebuild", "products": {}},
                        "signatures": [{"keyid": f"{i:064x}", "sig": "00" * 64} for i in range(8)]}).encode()
    shared.faults["/rb1-tree/"] = Fault.body(bogus)
    entries = [RebuilderEntry(rb.name, f"{shared.url}/{rb.root.name}", [rb.key.public_pem]) for rb in (rb1, rb2)]
    policy = load_policy(write_policy(tmp_path / "policy.toml", entries, threshold=1,
                                      fetch={**FETCH, "max_workers": 1}))
    verdicts, _elapsed = verify(policy, *arts)
    assert all(v.accepted and [x.rebuilder for x in v.votes] == ["rb2"] for v in verdicts), \
        [v.reason for v in verdicts]
    assert [kinds(v)["rb1"] for v in verdicts][-1] == {"slow"}
