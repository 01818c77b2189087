"""The halt brake as admins and halt signers meet it: overrides, staleness, exit codes, signer tools.

Every test runs the real `rebuildgate` command against a real policy, feed
and state directory (tests/support/halts.py); what a person reads is
asserted as well as what the command does.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rebuildgate import halt
from tests.support.halts import LATER, HaltTeam
from tests.support.links import digests
from tests.support.policy import write_policy
from tests.support.rebuilders import make_rebuilders

CONTENT = b"the package"
FILE = "hello_1.0-1_all.deb"
SHA = digests(CONTENT)["sha256"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebuildgate.cli", *args], capture_output=True, text=True,
                          timeout=60)


class Admin(HaltTeam):
    """K = 2 of alice, bob, carol; one rebuilder attesting hello; helpers for the commands."""

    def __init__(self, tmp_path: Path, **halt_extra) -> None:
        super().__init__(tmp_path, 2, **halt_extra)
        rb = make_rebuilders(tmp_path, 1)[0]
        rb.publish("hello", "1.0-1", {FILE: CONTENT})
        self.policy = write_policy(tmp_path / "policy.toml", [rb.entry()], tables=self.tables(),
                                   arrays=self.arrays())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return run(*args, "--policy", str(self.policy))

    def verify(self, name: str = "hello") -> subprocess.CompletedProcess:
        return self.cli("verify", "--artifact", FILE, "--sha256", SHA, "--name", name, "--version", "1.0-1")


@pytest.fixture
def admin(tmp_path) -> Admin:
    return Admin(tmp_path)


# --- overrides name the halt's version ----------------------------------------------

def test_an_override_does_not_cover_a_reissued_halt(admin) -> None:
    admin.publish(admin.statement("alice", "bob", ident="H", version=1, packages=["hello"]))
    assert admin.verify().returncode == 1
    r = admin.cli("halt", "override", "H", "--reason", "checked v1: harmless")
    assert r.returncode == 0 and "halt H v1 overridden by" in r.stdout, r.stderr
    r = admin.verify()
    assert r.returncode == 0 and "accepted past admin override of halt H" in r.stdout, r.stdout
    assert "rebuildgate: hello 1.0-1 (all): accepted past admin override of halt H" in r.stderr  # the warning

    admin.publish(admin.statement("alice", "bob", ident="H", version=2))  # re-issued: now covers everything
    r = admin.verify()
    assert r.returncode == 1 and "halted by H" in r.stdout
    r = admin.cli("halt", "status")
    assert r.returncode == 1
    assert "override of halt H v1 by" in r.stdout and "NO LONGER MATCHES (halt H is now v2)" in r.stdout
    assert "halt H v2: IN FORCE" in r.stdout and "OVERRIDDEN" not in r.stdout.split("halt H v2")[1].split("\n")[0]
    state = json.loads((admin.directory / "halt-state" / halt.STATE_FILE).read_text())
    assert state["overrides"]["H"]["version"] == 1 and len(state["overrides"]["H"]["digest"]) == 64


def test_an_override_for_an_id_not_in_force_is_refused_unless_forced(admin) -> None:
    admin.publish(admin.statement("alice", "bob", ident="H-0VB", packages=["hello"]))
    r = admin.cli("halt", "override", "H-OVB", "--reason", "typo")
    assert r.returncode == 2 and "no halt 'H-OVB' is in force (halts known: H-0VB)" in r.stderr
    r = admin.cli("halt", "override", "H-9", "--reason", "ahead of time", "--force")
    assert r.returncode == 2 and "--force needs --version N" in r.stderr
    r = admin.cli("halt", "override", "H-9", "--reason", "ahead of time", "--force", "--version", "3")
    assert r.returncode == 0 and "halt H-9 v3 overridden" in r.stdout
    r = admin.cli("halt", "status")
    assert "override of halt H-9 v3 by" in r.stdout and "DANGLING, no such halt is in force" in r.stdout
    assert r.returncode == 1 and "1 halt(s) in force, 1 blocking" in r.stdout  # H-0VB still blocks


def test_status_exit_codes(admin, tmp_path) -> None:
    admin.publish()
    r = admin.cli("halt", "status")
    assert r.returncode == 0 and "0 halt(s) in force, 0 blocking" in r.stdout
    admin.publish(admin.statement("alice", "bob", packages=["hello"]))
    assert admin.cli("halt", "status").returncode == 1
    admin.cli("halt", "override", "H-1", "--reason", "ok")
    r = admin.cli("halt", "status")
    assert r.returncode == 0 and "OVERRIDDEN by" in r.stdout and "1 halt(s) in force, 0 blocking" in r.stdout
    (tmp_path / "broken.toml").write_text("threshold = 'x'\n")
    assert run("halt", "status", "--policy", str(tmp_path / "broken.toml")).returncode == 2


def test_status_without_a_halt_section_says_halts_are_not_configured(tmp_path) -> None:
    rb = make_rebuilders(tmp_path, 1)[0]
    policy = write_policy(tmp_path / "p.toml", [rb.entry()])
    r = run("halt", "status", "--policy", str(policy))
    assert r.returncode == 0 and "halt flags are not configured" in r.stdout and "no [halt] section" in r.stdout


# --- staleness is its own thing ---------------------------------------------------------

def test_never_read_feeds_are_named_checked_and_have_a_way_out(admin) -> None:
    r = admin.cli("check-config")
    assert r.returncode == 0
    assert "warning: halt-feeds-stale: no halt feed has ever been read on this machine" in r.stdout
    assert "set-up order" in r.stdout
    r = admin.cli("halt", "status")
    assert r.returncode == 1
    assert f"no halt feed is published at file://{admin.feed} (not found)" in r.stdout  # not rebuilder words
    assert "BLOCKING EVERY INSTALL: halt-feeds-stale: no halt feed has ever been read" in r.stdout
    assert "0 halt(s) in force, 0 blocking; every install blocked" in r.stdout
    r = admin.verify()
    assert r.returncode == 1 and "halt-feeds-stale: no halt feed has ever been read on this machine; " \
        "stale = block" in r.stdout and "halted by halt-feeds-stale" not in r.stdout

    # way out 1: override the staleness (logged), until a feed is read
    r = admin.cli("halt", "override", halt.STALE_ID, "--reason", "feed host is down; checked by hand")
    assert r.returncode == 0 and "the stale halt feeds (until a feed is read again) overridden" in r.stdout
    r = admin.verify()
    assert r.returncode == 0 and "accepted past admin override of halt halt-feeds-stale" in r.stdout
    log = [json.loads(x) for x in (admin.directory / "decisions.log").read_text().splitlines()]
    assert any(e.get("event") == "halt-override" and e["id"] == halt.STALE_ID for e in log)
    assert admin.cli("halt", "status").returncode == 0

    # way out 2: publish an (empty) signed feed and read it
    admin.publish()
    r = admin.cli("halt", "refresh")
    assert r.returncode == 0 and "halt state saved" in r.stdout
    r = admin.cli("halt", "status")
    assert r.returncode == 0 and f"override of {halt.STALE_ID}" in r.stdout and "no longer matches" in r.stdout
    assert admin.verify().returncode == 0


def test_overriding_fresh_feeds_is_refused(admin) -> None:
    admin.publish()
    r = admin.cli("halt", "override", halt.STALE_ID, "--reason", "x")
    assert r.returncode == 2 and "not stale: there is nothing to override" in r.stderr


def test_refresh_says_when_no_feed_could_be_read(admin) -> None:
    r = admin.cli("halt", "refresh")
    assert r.returncode == 1 and "no halt feed could be read" in r.stdout


# --- signer tools ------------------------------------------------------------------------

def sign(admin: Admin, out: Path, expires: str, who: str = "alice") -> subprocess.CompletedProcess:
    return run("halt", "sign", "--key", str(admin.keys[who].private_pem), "--id", "H-5", "--version", "1",
               "--reason", "r", "--expires", expires, "--package", "hello", "-o", str(out))


def test_signer_tools_refuse_a_past_expiry_and_say_what_a_date_means(admin, tmp_path) -> None:
    r = sign(admin, tmp_path / "old.json", "2020-01-01")
    assert r.returncode == 2 and "--expires 2020-01-01T23:59:59Z is in the past" in r.stderr
    assert not (tmp_path / "old.json").exists()
    day = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    r = sign(admin, tmp_path / "st.json", day)
    assert r.returncode == 0 and f"expires {day}T23:59:59Z" in r.stdout
    assert json.loads((tmp_path / "st.json").read_text())["signed"]["expires"] == f"{day}T23:59:59Z"
    r = run("halt", "feed", "--key", str(admin.keys["alice"].private_pem), "--version", "1", "--expires",
            "2001-02-03T04:05:06Z", "-o", str(tmp_path / "feed.json"))
    assert r.returncode == 2 and "is in the past" in r.stderr


def test_cosign_says_whether_the_signature_is_from_a_trusted_signer(admin, tmp_path, tmp_keys) -> None:
    st = tmp_path / "st.json"
    assert sign(admin, st, LATER.date().isoformat()).returncode == 0
    r = run("halt", "cosign", "--key", str(admin.keys["bob"].private_pem), "--policy", str(admin.policy), str(st))
    assert r.returncode == 0, r.stderr
    assert "now 2 signatures, 2 valid from distinct trusted signers (alice, bob); 2 required" in r.stdout
    assert "the new signature is by trusted halt signer bob" in r.stdout
    stranger = tmp_keys("ed25519", "mallory")
    r = run("halt", "cosign", "--key", str(stranger.private_pem), "--policy", str(admin.policy), str(st))
    assert r.returncode == 1 and "WARNING: the new signature is not by a halt signer" in r.stderr
    assert "now 3 signatures, 2 valid from distinct trusted signers (alice, bob)" in r.stdout


def test_signatures_present_but_none_valid_is_said_so(admin, tmp_keys) -> None:
    mallory, eve = tmp_keys("ed25519", "mallory"), tmp_keys("ed25519", "eve")
    payload = halt.statement_payload("H-7", "halt", 1, "r", LATER, packages=["hello"])
    doc = halt.sign_document(payload, halt.load_signer(mallory.private_pem))
    doc = halt.sign_document(payload, halt.load_signer(eve.private_pem), json.loads(doc)["signatures"])
    admin.publish(doc)
    r = admin.cli("halt", "status")
    assert "halt statement H-7 has 0 of 2 required signatures (2 signatures present, none valid)" in r.stdout
