"""Halt flags: K of N developers stop a package; lifts, expiry, rollback, overrides."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rebuildgate import halt
from rebuildgate.errors import ConfigError
from rebuildgate.model import Artifact
from rebuildgate.policy import load_policy
from rebuildgate.verify import Verifier

from tests.support.halts import LATER, HaltTeam
from tests.support.links import digests
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders

NOW = dt.datetime.now(dt.timezone.utc)
CONTENT = b"the package"
FILE = "hello_1.0-1_all.deb"
ART = Artifact(FILE, digests(CONTENT)["sha256"], name="hello", source="hello-src", version="1.0-1", arch="all",
               repo="deb.example/debian")


class Team(HaltTeam):
    """A HaltTeam (K = 2 of alice, bob, carol) and one rebuilder attesting ART."""

    def __init__(self, tmp_path: Path, k: int = 2, **halt_extra) -> None:
        super().__init__(tmp_path, k, **halt_extra)
        self.tmp = tmp_path
        rbs = make_rebuilders(tmp_path, 1)
        rbs[0].publish("hello-src", "1.0-1", {FILE: CONTENT})
        self.policy_path = write_policy(tmp_path / "policy.toml", [rbs[0].entry()], tables=self.tables(),
                                        arrays=self.arrays())
        self.policy = load_policy(self.policy_path)

    def verdict(self, artifact: Artifact = ART, **kw):
        with Verifier(self.policy, **kw) as v:
            return v.verify_many([artifact])[0]


@pytest.fixture
def team(tmp_path, tmp_keys) -> Team:
    return Team(tmp_path)


def test_no_halt_accepts(team) -> None:
    team.publish()
    v = team.verdict()
    assert v.accepted and v.halts == ()


def test_k_minus_one_signatures_do_nothing(team) -> None:
    team.publish(team.statement("alice"))
    v = team.verdict()
    assert v.accepted, v.reason


def test_k_signatures_block_despite_all_votes(team) -> None:
    team.publish(team.statement("alice", "bob"))
    v = team.verdict()
    assert not v.allowed and v.verdict == "blocked" and v.vote_count == 1
    assert "halted by H-1 (reason for H-1; signed by alice, bob)" in v.reason


def test_audit_mode_does_not_lift_a_halt(tmp_path, tmp_keys) -> None:
    t = Team(tmp_path)
    t.policy_path.write_text(t.policy_path.read_text().replace("threshold = 1\n", 'threshold = 1\nmode = "audit"\n', 1))
    t.policy = load_policy(t.policy_path)
    assert t.policy.mode == "audit"
    t.publish(t.statement("alice", "bob"))
    assert not t.verdict().allowed


@pytest.mark.parametrize("doctor", ["forged", "duplicated", "unknown-key"])
def test_bad_signatures_do_not_count(team, tmp_keys, doctor) -> None:
    doc = json.loads(team.statement("alice"))
    if doctor == "forged":  # bob's signature over something else
        other = json.loads(team.statement("bob", ident="H-other"))
        doc["signatures"].append(other["signatures"][0])
    elif doctor == "duplicated":
        doc["signatures"].append(dict(doc["signatures"][0]))
    else:
        stranger = halt.load_signer(tmp_keys("ed25519", "mallory").private_pem)
        doc = json.loads(halt.sign_document(doc["signed"], stranger, doc["signatures"]))
    team.publish(json.dumps(doc).encode())
    assert team.verdict().accepted
    watch = halt.HaltWatch(team.policy.halt, Verifier(team.policy).transport, team.policy.path)
    watch.refresh()
    assert any("1 of 2 required signatures" in r for r in watch.rejected)


def test_lift_needs_k_signatures(team) -> None:
    team.publish(team.statement("alice", "bob"))
    assert not team.verdict().allowed
    team.publish(team.statement("alice", "bob"), team.statement("carol", action="lift", version=2))
    assert not team.verdict().allowed
    team.publish(team.statement("alice", "bob"), team.statement("carol", "bob", action="lift", version=2))
    assert team.verdict().accepted


def test_lift_with_lower_version_does_nothing(team) -> None:
    team.publish(team.statement("alice", "bob", version=5))
    team.publish(team.statement("alice", "bob", version=5), team.statement("carol", "bob", action="lift", version=4))
    assert not team.verdict().allowed


def test_expired_halt_is_ignored(team) -> None:
    team.publish(team.statement("alice", "bob", expires=NOW - dt.timedelta(seconds=1)))
    assert team.verdict().accepted


def test_halts_are_sticky_when_a_feed_drops_them(team) -> None:
    team.publish(team.statement("alice", "bob"))
    assert not team.verdict().allowed
    team.publish()  # newer feed without the halt, and no lift
    assert not team.verdict().allowed


def test_rolled_back_feed_is_refused(team) -> None:
    team.publish(version=5)
    team.verdict()
    team.publish(team.statement("alice", "bob"), version=3)  # older feed, even with news
    watch = halt.HaltWatch(team.policy.halt, Verifier(team.policy).transport, team.policy.path)
    watch.refresh()
    assert not watch.status[0].ok and "rollback" in watch.status[0].message
    assert team.verdict().accepted  # the rolled-back feed's halt was not taken


def test_expired_or_unsigned_feed_is_refused(team) -> None:
    team.publish()
    assert team.verdict().accepted  # one good read: the feeds are fresh
    team.publish(team.statement("alice", "bob"), expires=NOW - dt.timedelta(seconds=1))
    assert team.verdict().accepted  # the expired feed's halt is not taken
    team.publish(team.statement("alice", "bob"), signers=())
    watch = halt.HaltWatch(team.policy.halt, Verifier(team.policy).transport, team.policy.path)
    watch.refresh()
    assert not watch.status[0].ok and "unsigned" in watch.status[0].message
    assert team.verdict().accepted


def test_unreachable_feed_past_max_age_blocks_or_warns(tmp_path, tmp_keys, caplog) -> None:
    for stale in ("block", "warn"):
        t = Team(tmp_path / stale, max_age=60, stale=stale)
        t.publish()
        assert t.verdict().accepted  # fresh: fine
        t.feed.unlink()  # feed unreachable from now on
        future = lambda: NOW + dt.timedelta(seconds=3600)  # noqa: E731
        watch = halt.HaltWatch(t.policy.halt, Verifier(t.policy).transport, t.policy.path, clock=future)
        v = t.verdict(halts=watch)
        if stale == "block":
            assert not v.allowed and halt.STALE_ID in v.reason and "policy says block" in v.reason
        else:
            assert v.accepted and "policy says warn" in caplog.text


def test_never_read_feed_counts_as_stale(tmp_path, tmp_keys) -> None:
    t = Team(tmp_path)
    v = t.verdict()  # no feed file at all
    assert not v.allowed and "no halt feed has ever been read" in v.reason


def test_override_lets_exactly_that_halt_through(team) -> None:
    team.publish(team.statement("alice", "bob", ident="H-1"), team.statement("bob", "carol", ident="H-2"))
    watch = halt.HaltWatch(team.policy.halt, Verifier(team.policy).transport, team.policy.path)
    watch.set_override("H-1", "false alarm: timestamp only", "admin")
    v = team.verdict()
    assert not v.allowed and "halted by H-2" in v.reason and "halted by H-1" not in v.reason
    watch.set_override("H-2", "also fine", "admin")
    v = team.verdict()
    assert v.accepted and "halt H-1 overridden by admin: admin at" in v.reason and "false alarm" in v.reason
    watch.clear_override("H-2")
    assert not team.verdict().allowed


@pytest.mark.parametrize("match,covered", [
    ({"packages": ["hello"]}, True),
    ({"packages": ["hello-s*"]}, True),  # source name
    ({"packages": ["other"]}, False),
    ({"packages": ["hello"], "versions": ["1.0-*"]}, True),
    ({"packages": ["hello"], "versions": ["2.*"]}, False),
    ({"repositories": ["deb.example/*"]}, True),
    ({"repositories": ["deb.example/debian"]}, True),
    ({"repositories": ["other/*"]}, False),
    ({"sha256": [ART.sha256]}, True),
    ({"sha256": ["ab" * 32]}, False),
    ({"packages": ["hello"], "sha256": ["ab" * 32]}, False),  # every given field must match
    # signed in a form no repository id has: read as what it names (a brake that misses is worse)
    ({"repositories": ["deb.example/debian/*"]}, True),
    ({"repositories": ["https://deb.example/debian/"]}, True),
    ({"repositories": ["https://other.example/debian/"]}, False),
])
def test_what_a_halt_covers(team, match, covered) -> None:
    team.publish(team.statement("alice", "bob", **match))
    assert team.verdict().allowed is not covered


def test_unreadable_state_blocks(team) -> None:
    team.publish()
    state = team.policy.halt.state_dir
    state.mkdir(exist_ok=True)
    (state / halt.STATE_FILE).write_text("{broken")
    v = team.verdict()
    assert not v.allowed and "halt state" in v.reason


@pytest.mark.parametrize("table,key,problem", [
    ({"threshold": 1}, "halt.feeds", "is required"),
    ({"feeds": ["ftp://x"], "threshold": 1}, "halt.feeds", "must start with"),
    ({"feeds": ["file:///x"], "threshold": 4}, "halt.threshold", "only 3 halt signer"),
    ({"feeds": ["file:///x"], "threshold": 0}, "halt.threshold", "at least 1"),
    ({"feeds": ["file:///x"], "threshold": 1, "stale": "ignore"}, "halt.stale", "must be one of"),
    ({"feeds": ["file:///x"], "threshold": 1, "max_age": 0}, "halt.max_age", "at least 1"),
    ({"feeds": ["file:///x"], "threshold": 1, "extra": 1}, "halt.extra", "unknown key"),
])
def test_halt_policy_errors(tmp_path, tmp_keys, table, key, problem) -> None:
    k = tmp_keys()
    signers = [{"name": n, "keys": [str(k.public_pem)]} for n in ("a", "b", "c")]
    rbs = make_rebuilders(tmp_path, 1)
    p = write_policy(tmp_path / "p.toml", [rbs[0].entry()], tables={"halt": table}, arrays={"halt.signer": signers})
    with pytest.raises(ConfigError) as e:
        load_policy(p)
    assert e.value.key == key and problem in str(e.value)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebuildgate.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_tools_for_signers_and_admins(team) -> None:
    st = team.tmp / "h.json"
    r = run("halt", "sign", "--key", str(team.keys["alice"].private_pem), "--id", "H-9", "--version", "1",
            "--reason", "backdoor in hello", "--expires", LATER.date().isoformat(), "--package", "hello", "-o", str(st))
    assert r.returncode == 0, r.stderr
    r = run("halt", "cosign", "--key", str(team.keys["bob"].private_pem), str(st))
    assert r.returncode == 0 and "2 signature(s)" in r.stdout
    r = run("halt", "feed", "--key", str(team.keys["carol"].private_pem), "--version", "1", "--expires",
            LATER.isoformat(), "-o", str(team.feed), str(st))
    assert r.returncode == 0, r.stderr
    r = run("halt", "status", "--policy", str(team.policy_path))
    assert r.returncode == 1, r.stderr  # installs are being blocked by a halt (issue: status exits 1 then)
    assert "halt H-9 v1: IN FORCE: backdoor in hello" in r.stdout and "signed by alice, bob" in r.stdout
    assert "1 halt(s) in force" in r.stdout
    r = run("verify", "--policy", str(team.policy_path), "--artifact", FILE, "--sha256", ART.sha256,
            "--source", "hello-src")
    assert r.returncode == 1 and "halted by H-9" in r.stdout

    r = run("halt", "override", "H-9", "--reason", "checked: harmless", "--policy", str(team.policy_path))
    assert r.returncode == 0 and "overridden" in r.stdout
    r = run("verify", "--policy", str(team.policy_path), "--artifact", FILE, "--sha256", ART.sha256,
            "--source", "hello-src")
    assert r.returncode == 0 and "halt H-9 overridden by admin" in r.stdout and "checked: harmless" in r.stdout
    log = [json.loads(x) for x in (team.tmp / "decisions.log").read_text().splitlines()]
    assert any(e.get("event") == "halt-override" and e["reason"] == "checked: harmless" for e in log)
    assert run("halt", "status", "--policy", str(team.policy_path)).stdout.count("OVERRIDDEN") == 1
    r = run("halt", "clear-override", "H-9", "--policy", str(team.policy_path))
    assert r.returncode == 0 and "cleared" in r.stdout
    r = run("verify", "--policy", str(team.policy_path), "--artifact", FILE, "--sha256", ART.sha256,
            "--source", "hello-src")
    assert r.returncode == 1

    # A lift signed by two signers releases it.
    lift = team.tmp / "lift.json"
    assert run("halt", "lift", "--key", str(team.keys["bob"].private_pem), "--id", "H-9", "--version", "2",
               "--reason", "timestamp only", "--expires", LATER.date().isoformat(), "-o", str(lift)).returncode == 0
    assert run("halt", "cosign", "--key", str(team.keys["carol"].private_pem), str(lift)).returncode == 0
    assert run("halt", "feed", "--key", str(team.keys["carol"].private_pem), "--version", "2", "--expires",
               LATER.isoformat(), "-o", str(team.feed), str(st), str(lift)).returncode == 0
    r = run("verify", "--policy", str(team.policy_path), "--artifact", FILE, "--sha256", ART.sha256,
            "--source", "hello-src")
    assert r.returncode == 0, r.stdout


def test_cli_halt_errors(team, tmp_path) -> None:
    r = run("halt", "sign", "--key", str(tmp_path / "nokey.pem"), "--id", "H", "--version", "1", "--reason", "r",
            "--expires", "2030-01-01", "--all", "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "cannot load private key" in r.stderr
    r = run("halt", "sign", "--key", str(team.keys["alice"].private_pem), "--id", "H", "--version", "1",
            "--reason", "r", "--expires", "soon", "--all", "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "not a usable ISO 8601 time" in r.stderr
    r = run("halt", "sign", "--key", str(team.keys["alice"].private_pem), "--id", "H", "--version", "1",
            "--reason", "r", "--expires", "2030-01-01", "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "say what the halt covers" in r.stderr


def test_halt_sign_refuses_a_repository_pattern_no_id_matches(team, tmp_path) -> None:
    """A halt signed so would stop nothing from the repository it names, as written."""
    sign = ["halt", "sign", "--key", str(team.keys["alice"].private_pem), "--id", "H", "--version", "1",
            "--reason", "r", "--expires", "2030-01-01", "-o", str(tmp_path / "x.json")]
    r = run(*sign, "--repository", "127.0.0.1:18080/*")
    assert r.returncode == 2 and not (tmp_path / "x.json").exists()
    (line,) = r.stderr.strip().splitlines()
    assert "--repository pattern '127.0.0.1:18080/*' misses the repository '127.0.0.1:18080' itself" in line
    assert "did you mean '127.0.0.1:18080'" in line
    r = run(*sign, "--repository", "https://deb.debian.org/debian/")
    assert r.returncode == 2 and "is a URI" in r.stderr and "did you mean 'deb.debian.org/debian'" in r.stderr
    r = run(*sign, "--repository", "127.0.0.1:18080", "--repository", "127.0.0.1:18080/*")
    assert r.returncode == 0, r.stderr


def test_halt_status_and_check_config_name_a_signed_pattern_no_id_matches(team) -> None:
    """Signed elsewhere (not with `halt sign`): it halts what it names, and both commands say so."""
    team.publish(team.statement("alice", "bob", repositories=["deb.example/debian/*"]))
    assert not team.verdict().allowed  # ART comes from deb.example/debian
    r = run("halt", "status", "--policy", str(team.policy_path))
    assert r.returncode == 1 and "halt H-1 v1: IN FORCE" in r.stdout  # 1: a halt is blocking installs
    assert ("warning: halt H-1 v1: repository pattern 'deb.example/debian/*' misses the repository "
            "'deb.example/debian' itself") in r.stdout
    assert "it is read as 'deb.example/debian', 'deb.example/debian/*'" in r.stdout
    r = run("check-config", "--policy", str(team.policy_path))  # from the state `halt status` saved
    assert r.returncode == 0 and "warning: halt H-1 v1: repository pattern 'deb.example/debian/*'" in r.stdout
    assert "(saved in " in r.stdout


@pytest.mark.parametrize("expires", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "soon", 5])
def test_unsigned_feed_with_crafted_dates_cannot_lift_a_halt(tmp_path, expires) -> None:
    """Nothing in an unauthenticated feed is parsed before its signatures:
    a crafted date neither crashes the halt check nor opens the gate, even in
    audit mode where any other failure would be relaxed."""
    t = Team(tmp_path)
    t.policy_path.write_text(t.policy_path.read_text().replace("threshold = 1\n", 'threshold = 1\nmode = "audit"\n', 1))
    t.policy = load_policy(t.policy_path)
    t.publish(t.statement("alice", "bob"))
    assert not t.verdict().allowed  # halted, audit mode notwithstanding
    forged = {"signed": {"_type": "rebuildgate-halt-feed", "version": 99, "expires": expires, "statements": []},
              "signatures": [{"keyid": "ab", "sig": "00"}]}
    t.feed.write_text(json.dumps(forged))
    v = t.verdict()
    assert not v.allowed and "halted by H-1" in v.reason, v.reason


def test_halts_that_cannot_be_evaluated_are_not_relaxed(tmp_path) -> None:
    """Audit mode, the allowlist and an ungated repository relax rebuilder
    votes, never a brake that could not be checked."""
    t = Team(tmp_path)
    t.policy_path.write_text(t.policy_path.read_text().replace("threshold = 1\n", 'threshold = 1\nmode = "audit"\n', 1))
    t.policy = load_policy(t.policy_path)

    def broken(_):
        raise RuntimeError("feed parser bug")
    v = t.verdict(halts=broken)
    assert not v.allowed and "halt-error" in v.reason and "feed parser bug" in v.reason


@pytest.mark.parametrize("version,covered", [
    ("1.0-1", True), ("1:1.0-1", True), ("7:1.0-1", True), ("1.0-2", False), ("1:1.0-2", False)])
def test_a_version_pattern_matches_with_or_without_an_epoch(version, covered) -> None:
    """An epoch added by the index must not escape a halt: rebuilders publish one
    attestation for both spellings, since file names and URLs drop the epoch."""
    payload = halt.statement_payload("H", "halt", 1, "r", LATER, packages=["hello"], versions=["1.0-1"])
    st = halt.Statement("H", "halt", 1, "r", NOW, LATER, False, ("hello",), ("1.0-1",), (), ("alice",))
    assert payload["versions"] == ["1.0-1"]
    assert st.matches(Artifact(FILE, ART.sha256, name="hello", version=version)) is covered


def test_halts_are_judged_on_what_the_file_says(team) -> None:
    """The index calls the halted hello 'hello-ng 1:2.0' from source 'other'; the file says hello 1.0-1."""
    team.publish(team.statement("alice", "bob", packages=["hello-src"], versions=["1.0-1"]))
    lying = Artifact(FILE, ART.sha256, name="hello-ng", source="other", version="2.0", arch="all", repo=ART.repo)
    with Verifier(team.policy) as v:
        assert v.verify_many([lying])[0].halts == ()  # the index's words alone escape it ...
        verdict = v.submit(lying).result(ART)  # ... the file's own do not
    assert not verdict.allowed and "halted by H-1" in verdict.reason
    assert verdict.artifact.name == "hello" and verdict.artifact.index_said == "hello-ng 2.0 (all), source other"
    assert "not as the repository index said (hello-ng 2.0 (all), source other)" in verdict.reason
    assert verdict.to_json()["index_said"] == "hello-ng 2.0 (all), source other"


def test_halt_state_that_cannot_be_saved_keeps_new_halts_but_no_lifts(team, monkeypatch) -> None:
    team.publish(team.statement("alice", "bob", ident="OLD"))  # saved
    assert not team.verdict().allowed
    team.publish(team.statement("alice", "bob", ident="OLD"),
                 team.statement("bob", "carol", ident="OLD", action="lift", version=2),
                 team.statement("alice", "carol", ident="NEW", packages=["hello"]))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(halt, "write_atomic", full_disk)
    v = team.verdict()
    assert not v.allowed
    ids = [h.id for h in v.halts]
    assert ids[:2] == ["OLD", "NEW"] or sorted(ids[:2]) == ["NEW", "OLD"]  # the lift is not used, the new halt is
    assert halt.UNSAVED_ID in ids and "No space left on device" in v.reason and "stale = block" in v.reason
    state = json.loads((team.policy.halt.state_dir / halt.STATE_FILE).read_text())
    assert set(state["statements"]) == {"OLD"} and state["feeds"][f"file://{team.feed}"]["version"] == 1


def test_halt_state_that_cannot_be_saved_warns_when_stale_is_warn(tmp_path, tmp_keys, monkeypatch, caplog) -> None:
    t = Team(tmp_path, stale="warn")
    t.publish()
    monkeypatch.setattr(halt, "write_atomic", lambda *a, **k: (_ for _ in ()).throw(OSError(30, "Read-only")))
    with caplog.at_level("WARNING"):
        v = t.verdict()
    assert v.allowed and "cannot save halt state" in caplog.text and "stale = warn" in caplog.text


def test_an_unreadable_state_is_read_once_per_run(team, monkeypatch) -> None:
    team.publish()
    state = team.policy.halt.state_dir
    state.mkdir(exist_ok=True)
    (state / halt.STATE_FILE).write_text("{broken")
    reads = []
    original = halt.HaltWatch._load_state

    def counting(self):
        reads.append(1)
        return original(self)

    monkeypatch.setattr(halt.HaltWatch, "_load_state", counting)
    arts = [Artifact(f"p{i}_1_all.deb", "ab" * 32, name=f"p{i}", version="1") for i in range(20)]
    with Verifier(team.policy) as v:
        verdicts = v.verify_many(arts)
    assert all(not x.allowed and "halt state" in x.reason for x in verdicts)
    assert len(reads) == 1


def test_prepare_saves_the_state_before_any_verdict(team) -> None:
    team.publish(team.statement("alice", "bob"))
    path = team.policy.halt.state_dir / halt.STATE_FILE
    with Verifier(team.policy) as v:
        v.prepare()
        assert "H-1" in json.loads(path.read_text())["statements"]


def test_cli_signs_a_halt_for_exact_digests(team, tmp_path) -> None:
    out = tmp_path / "st.json"
    args = [sys.executable, "-m", "rebuildgate.cli", "halt", "sign", "--key", str(team.keys["alice"].private_pem),
            "--id", "H-9", "--version", "1", "--reason", "r", "--expires", "2099-01-01", "-o", str(out)]
    r = subprocess.run([*args, "--sha256", ART.sha256.upper()], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["signed"]["sha256"] == [ART.sha256]
    r = subprocess.run([*args, "--sha256", "xyz"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not 64 hex digits" in r.stderr


def test_a_stored_halt_that_no_longer_verifies_blocks_everything(team) -> None:
    team.publish(team.statement("alice", "bob", packages=["other"]))
    team.verdict()  # stored
    path = team.policy.halt.state_dir / halt.STATE_FILE
    state = json.loads(path.read_text())
    doc = json.loads(state["statements"]["H-1"]["doc"])
    doc["signed"]["packages"] = ["nothing-at-all"]  # narrowed on disk, signatures kept
    state["statements"]["H-1"]["doc"] = json.dumps(doc)
    path.write_text(json.dumps(state))
    team.publish()  # the feed no longer lists it
    v = team.verdict()
    assert not v.allowed and "halt-state-invalid: halt state" in v.reason
    assert "a signature by a trusted signer does not verify" in v.reason
    r = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "halt", "status", "--policy", str(team.policy_path)],
                       capture_output=True, text=True, timeout=60)
    assert "BLOCKING EVERY INSTALL: halt-state-invalid: stored halt H-1" in r.stdout and r.returncode == 1


def test_a_stored_halt_whose_signer_left_the_policy_is_dropped_and_reported(tmp_path, tmp_keys, caplog) -> None:
    t = Team(tmp_path)
    t.publish(t.statement("alice", "bob", packages=["hello"]))
    assert not t.verdict().allowed
    t.publish()  # the feed drops it: only the stored copy remains
    text = t.policy_path.read_text()
    bob = text.index('name = "bob"')
    t.policy_path.write_text(text[:text.rindex("[[halt.signer]]", 0, bob)] + text[text.index("[[", bob):]
                             if "[[" in text[bob:] else text[:text.rindex("[[halt.signer]]", 0, bob)])
    t.policy = load_policy(t.policy_path)
    assert [s.name for s in t.policy.halt.signers] == ["alice", "carol"]
    with caplog.at_level("WARNING"):
        v = t.verdict()
    assert v.allowed and "stored halt H-1 no longer counts under this policy" in caplog.text


def test_a_refresh_time_in_the_future_is_not_believed(tmp_path, tmp_keys) -> None:
    """One run with the clock 20 days ahead must not switch stale-feed protection off."""
    t = Team(tmp_path, max_age=3600)
    t.publish()
    ahead = NOW + dt.timedelta(days=20)
    with Verifier(t.policy) as v:
        v._halts._now = lambda: ahead  # the bad clock saves a refresh time 20 days ahead
        assert v.verify_many([ART])[0].allowed
    t.feed.unlink()  # the feed disappears
    v = t.verdict()
    assert not v.allowed and "halt-feeds-stale: no halt feed has ever been read on this machine" in v.reason


def test_an_oversized_state_file_is_refused_unread(team, monkeypatch) -> None:
    team.publish()
    state = team.policy.halt.state_dir
    state.mkdir(exist_ok=True)
    (state / halt.STATE_FILE).write_text(json.dumps({"feeds": {}, "statements": {}, "overrides": {},
                                                     "pad": "x" * 2048}))
    monkeypatch.setattr(halt, "MAX_STATE_BYTES", 1024)
    v = team.verdict()
    assert not v.allowed and "bytes (at most 1024)" in v.reason


@pytest.mark.parametrize("pattern", ["0:1.0-1", "1.0-1", "0:1.0-*"])
def test_an_explicit_zero_epoch_is_no_epoch(pattern) -> None:
    """rpm tools print '0:' for no epoch; signers will write it."""
    st = halt.Statement("H", "halt", 1, "r", NOW, LATER, False, ("hello",), (pattern,), (), ("alice",))
    assert st.matches(Artifact(FILE, ART.sha256, name="hello", version="1.0-1"))


def test_an_unsaved_newer_halt_does_not_replace_the_saved_one(team, monkeypatch) -> None:
    """A re-issued halt read while the state cannot be saved applies beside the saved one."""
    team.publish(team.statement("alice", "bob", ident="H", packages=["hello"]))
    assert not team.verdict().allowed  # saved: covers hello
    team.publish(team.statement("alice", "bob", ident="H", version=2, packages=["other"]))  # narrower
    monkeypatch.setattr(halt, "write_atomic", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space")))
    v = team.verdict()
    assert not v.allowed and "halted by H (reason for H" in v.reason
