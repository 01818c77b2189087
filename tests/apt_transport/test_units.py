"""In-process tests of the method's pieces: protocol, config, records, gate.

The gate is driven with a fake verifier so that every branch (accepted,
blocked, audit, crash, hash mismatch, inner method death) is checked
without a network; the real thing is covered by test_apt_get.py.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebuildgate.apt import protocol
from rebuildgate.apt.aptconfig import AptConfig
from rebuildgate.apt.gate import Gate, to_inner, to_outer
from rebuildgate.apt.records import is_package, make_artifact, parse_archive_name
from tests.support.packages import build_deb

pytestmark = pytest.mark.timeout(60)


# -- protocol ----------------------------------------------------------------------


def test_read_message_skips_blank_lines_and_keeps_order():
    stream = io.BytesIO(b"\n\n600 URI Acquire\nURI: http://x/a.deb\nFilename: /tmp/a\nX: 1\nX: 2\n\n")
    msg = protocol.read_message(stream)
    assert (msg.code, msg.text) == (600, "URI Acquire")
    assert msg.get("uri") == "http://x/a.deb" and msg.get_all("X") == ["1", "2"]
    assert protocol.read_message(stream) is None


def test_truncated_message_is_end_of_file():
    assert protocol.read_message(io.BytesIO(b"201 URI Done\nURI: x\n")) is None


@pytest.mark.parametrize("data", [b"hello\n\n", b"600 URI Acquire\nno colon here\n\n", b"60 x\n\n"])
def test_garbage_is_a_protocol_error(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.read_message(io.BytesIO(data))


def test_composed_fields_are_one_line():
    msg = protocol.compose(400, "URI Failure", URI="x", Message="a\nb\r\nc\x00d")
    assert msg.encode() == b"400 URI Failure\nURI: x\nMessage: a b c?d\n\n"


@given(st.binary(max_size=300))
def test_relayed_bytes_survive_roundtrip(value):
    value = value.replace(b"\n", b"").replace(b"\r", b"").strip(b" \t")
    raw = b"102 Status\nMessage: " + value + b"\n\n"
    msg = protocol.read_message(io.BytesIO(raw))
    assert msg.encode() == (b"102 Status\nMessage: " + value + b"\n\n" if value else b"102 Status\nMessage: \n\n")


@given(st.text(max_size=50), st.text(max_size=50))
def test_config_items_never_crash(name, value):
    config = AptConfig()
    quoted = protocol.Message(601, "Configuration", [("Config-Item", f"{_q(name)}={_q(value)}")])
    for item in protocol.config_items(quoted):
        if isinstance(item, ValueError):
            continue
        config.add(*item)
    settings = config.settings("http")
    assert settings.error is None or isinstance(settings.error, str)
    assert config.method_path("http").endswith("http")


def test_config_item_dequoting_and_settings():
    msg = protocol.Message(601, "Configuration", [
        ("Config-Item", "Rebuildgate::Policy=/etc/x%20y.toml"), ("Config-Item", "APT::Sandbox::User=_apt"),
        ("Config-Item", "Dir=/"), ("Config-Item", "Dir::Bin::Methods=/m/"), ("Config-Item", "Dir::Cache=var/c"),
        ("Config-Item", "Dir::Cache::archives=archives/"), ("Config-Item", "Acquire::http::Proxy=http://p:3128"),
        ("Config-Item", "broken item without equals")])
    config = AptConfig.from_message(msg)
    s = config.settings("http")
    assert str(s.policy) == "/etc/x y.toml" and s.sandbox_user == "_apt"
    assert s.proxy is not None and s.proxy.for_url("https://rb.example/x") == "http://p:3128"
    assert s.archives_dir == "/var/c/archives/" and config.method_path("https") == "/m/https"
    assert s.skipped and s.error is None


def _q(text: str) -> str:
    return "".join(f"%{b:02x}" if b <= 0x20 or b >= 0x7F or chr(b) in '%="' else chr(b) for b in text.encode())


# -- records -------------------------------------------------------------------------


def test_archive_names():
    pid = parse_archive_name("hello_2%3a1.0-1_all.deb")
    assert (pid.name, pid.version, pid.arch) == ("hello", "2:1.0-1", "all")
    pid = parse_archive_name("libfoo1_1.0%5f1_amd64.deb")
    assert (pid.name, pid.version, pid.arch) == ("libfoo1", "1.0_1", "amd64")
    assert parse_archive_name("Packages.gz") is None and parse_archive_name("a_b.deb") is None


def test_what_is_a_package():
    arch = "/var/cache/apt/archives/"
    assert is_package("http://h/pool/a_1_all.deb", "/var/cache/apt/archives/partial/a_1_all.deb", arch)
    assert is_package("http://h/pool/weird.bin", "/var/cache/apt/archives/partial/a_1_all.bin", arch)
    assert is_package("http://h/pool/a_1_all.udeb", "/home/u/a_1_all.udeb", arch)
    assert not is_package("http://h/dists/x/InRelease", "/var/lib/apt/lists/partial/h_InRelease", arch)


def test_artifact_from_request():
    a = make_artifact("rebuildgate+https://deb.example.org/debian/pool/main/f/foo/libfoo1_1.5-2_amd64.deb",
                      "/c/archives/partial/libfoo1_2%3a1.5-2_amd64.deb", "rebuildgate+https://deb.example.org/debian/",
                      "AB" * 32, None, None)
    assert (a.filename, a.name, a.version, a.arch, a.source) == ("libfoo1_1.5-2_amd64.deb", "libfoo1", "2:1.5-2",
                                                                 "amd64", "libfoo1")
    assert a.repo == "deb.example.org/debian" and a.sha256 == "ab" * 32


@pytest.mark.parametrize("uri,repo", [
    ("rebuildgate+https://deb.example.org/debian/pool/main/f/foo/foo_1_all.deb", "deb.example.org/debian"),
    ("rebuildgate+http://127.0.0.1:18080/./foo_1_all.deb", "127.0.0.1:18080"),
    ("rebuildgate+file:/srv/flat/./foo_1_all.deb", "/srv/flat"),
])
def test_artifact_without_target_repo_uri_gets_the_archive_root(uri, repo) -> None:
    """apt 2.6 always sends Target-Repo-URI; without it the id keeps its form."""
    assert make_artifact(uri, "/c/archives/partial/foo_1_all.deb", None, "ab" * 32, None, None).repo == repo


def test_uri_prefix_mapping():
    assert to_inner("rebuildgate+https://h/x") == "https://h/x"
    assert to_outer("https://h/x") == "rebuildgate+https://h/x"
    assert to_outer("rebuildgate+http://h/x") == "rebuildgate+http://h/x" and to_outer("") == ""


# -- gate with a fake verifier ---------------------------------------------------------


@dataclass
class FakeVerdict:
    artifact: object
    allowed: bool
    accepted: bool
    relaxed_by: str | None = None

    def summary(self) -> str:
        state = "accepted" if self.accepted else ("blocked, allowed by " + self.relaxed_by if self.relaxed_by
                                                  else "blocked")
        return f"{self.artifact.label}: {state}: because"


class FakePending:
    def __init__(self, verdict, delay=0.0, error=None):
        self.verdict, self.delay, self.error = verdict, delay, error

    def result(self, file=None):
        self.file = file
        time.sleep(self.delay)
        if self.error:
            raise self.error
        return self.verdict

    def add_done_callback(self, fn):
        """Like the real one: called from another thread once the verdict is in."""
        threading.Timer(self.delay, fn).start()


class FakeVerifier:
    def __init__(self, mode="accept", delay=0.0):
        self.mode, self.delay = mode, delay
        self.submitted = []

    def submit(self, artifact):
        self.submitted.append(artifact)
        if self.mode == "crash":
            return FakePending(None, error=RuntimeError("boom\nsecond line"))
        accepted = self.mode == "accept"
        relaxed = "audit mode" if self.mode == "audit" else None
        return FakePending(FakeVerdict(artifact, accepted or bool(relaxed), accepted, relaxed), self.delay)


class Recorder:
    def __init__(self):
        self.to_apt, self.to_inner = [], []
        self.event = threading.Condition()

    def apt(self, msg):
        with self.event:
            self.to_apt.append(msg)
            self.event.notify_all()

    def inner(self, msg):
        self.to_inner.append(msg)
        return True

    def wait_for(self, code, n=1, timeout=5.0):
        with self.event:
            assert self.event.wait_for(lambda: len([m for m in self.to_apt if m.code == code]) >= n, timeout), \
                self.to_apt
        return [m for m in self.to_apt if m.code == code]


@pytest.fixture
def deb(tmp_path: Path):
    archives = tmp_path / "archives"
    (archives / "partial").mkdir(parents=True)
    built = build_deb(tmp_path / "built", "hello", "1.0-1")
    path = archives / "partial" / "hello_1.0-1_all.deb"
    path.write_bytes(built.read_bytes())
    return {"path": path, "archives": str(archives) + "/", "sha": hashlib.sha256(path.read_bytes()).hexdigest()}


def _gate(rec, verifier, deb, refusal=None):
    return Gate(rec.apt, rec.inner, verifier, refusal, deb["archives"], None)


def _run(gate, rec, deb, expected=None, reported=None):
    uri = "rebuildgate+http://h/pool/hello_1.0-1_all.deb"
    gate.from_apt(protocol.Message(600, "URI Acquire", [("URI", uri), ("Filename", str(deb["path"])),
                                                        ("Expected-SHA256", expected or deb["sha"])]))
    assert rec.to_inner[-1].get("URI") == "http://h/pool/hello_1.0-1_all.deb"
    gate.from_inner(protocol.Message(200, "URI Start", [("URI", "http://h/pool/hello_1.0-1_all.deb")]))
    gate.from_inner(protocol.Message(201, "URI Done", [("URI", "http://h/pool/hello_1.0-1_all.deb"),
                                                       ("Filename", str(deb["path"])),
                                                       ("SHA256-Hash", reported or deb["sha"])]))
    return uri


def test_gate_accepts_after_verdict(deb):
    rec, verifier = Recorder(), FakeVerifier("accept", delay=0.2)
    gate = _gate(rec, verifier, deb)
    uri = _run(gate, rec, deb)
    [done] = rec.wait_for(201)
    assert done.get("URI") == uri and rec.to_apt[0].code == 200  # start relayed before the verdict
    assert verifier.submitted[0].sha256 == deb["sha"] and deb["path"].exists()


class CallbackOnlyPending(FakePending):
    """A verdict whose done-callback fires at once, while result() from a
    finisher thread would take 30 s: only the callback can answer in time."""

    released = threading.Event()

    def result(self, file=None):
        if threading.current_thread().name.startswith("rbg-finish"):
            self.released.wait(30)
        return self.verdict

    def add_done_callback(self, fn):
        threading.Thread(target=fn, name="fake-loop", daemon=True).start()


def test_gate_answers_from_the_verdicts_callback(deb):
    """apt refills its pipeline only as answers come back: the 201 must go out
    the moment the verdict is in, not when a finisher thread wakes up."""
    rec = Recorder()
    verifier = FakeVerifier("accept")
    verifier.submit = lambda a: CallbackOnlyPending(FakeVerdict(a, True, True))
    gate = _gate(rec, verifier, deb)
    try:
        _run(gate, rec, deb)
        rec.wait_for(201, timeout=5.0)
    finally:
        CallbackOnlyPending.released.set()
    time.sleep(0.2)  # the finisher's late answer, if it made one, would be here now
    assert len([m for m in rec.to_apt if m.code in (201, 400)]) == 1


def test_entry_capabilities_are_what_the_method_would_send():
    """entry.py answers apt before importing the method: its bytes must be the
    message the method itself composes for that scheme."""
    from rebuildgate.apt.entry import KNOWN_CAPABILITIES, capabilities_message, inner_scheme

    assert inner_scheme("/usr/lib/apt/methods/rebuildgate+https") == "https" and inner_scheme("/x/http") == ""
    for scheme, fields in KNOWN_CAPABILITIES.items():
        message = protocol.Message(protocol.CAPABILITIES, "Capabilities", list(fields))
        assert capabilities_message(fields) == message.encode()
        assert dict(fields)["Pipeline"] == "true" and dict(fields)["Send-Config"] == "true"
        [parsed] = [protocol.read_message(io.BytesIO(capabilities_message(fields)))]
        assert parsed.code == 100 and parsed.fields == list(fields)


@pytest.mark.parametrize("mode, code, needle", [("block", 400, "blocked: because"),
                                                ("crash", 400, "internal error"),
                                                ("audit", 201, None)])
def test_gate_outcomes(deb, mode, code, needle):
    rec = Recorder()
    gate = _gate(rec, FakeVerifier(mode), deb)
    _run(gate, rec, deb)
    [answer] = rec.wait_for(code)
    if needle:
        assert needle in answer.get("Message") and "\n" not in answer.get("Message")
        assert not deb["path"].exists(), "a blocked download must leave no partial file"
    else:
        [warning] = [m for m in rec.to_apt if m.code == 104]
        assert "allowed by audit mode" in warning.get("Message")


def test_gate_refuses_mismatching_hashes(deb):
    rec = Recorder()
    gate = _gate(rec, FakeVerifier("accept"), deb)
    _run(gate, rec, deb, expected="0" * 64)
    [answer] = rec.wait_for(400)
    assert "the repository index says " + "0" * 64 in answer.get("Message")


def test_gate_refusal_passes_indexes(deb):
    rec = Recorder()
    gate = _gate(rec, None, deb, refusal="rebuildgate: policy error: x")
    gate.from_apt(protocol.Message(600, "URI Acquire", [("URI", "rebuildgate+http://h/InRelease"),
                                                        ("Filename", "/l/partial/h_InRelease")]))
    assert rec.to_inner and rec.to_inner[-1].get("URI") == "http://h/InRelease"
    _run_refused = "rebuildgate+http://h/pool/hello_1.0-1_all.deb"
    gate.from_apt(protocol.Message(600, "URI Acquire", [("URI", _run_refused), ("Filename", str(deb["path"]))]))
    [answer] = rec.wait_for(400)
    assert answer.get("Message") == "rebuildgate: policy error: x" and len(rec.to_inner) == 1


def test_gate_inner_death_fails_open_items(deb):
    rec = Recorder()
    gate = _gate(rec, FakeVerifier("accept", delay=5), deb)
    gate.from_apt(protocol.Message(600, "URI Acquire", [("URI", "rebuildgate+http://h/a_1_all.deb"),
                                                        ("Filename", str(deb["path"]))]))
    gate.inner_exited(9)
    [answer] = rec.wait_for(400)
    assert "exited unexpectedly (status 9)" in answer.get("Message")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_read_message_never_crashes(data):
    """Whatever bytes arrive on the method's stdin, the parser returns
    messages, end of input, or ProtocolError; never another exception."""
    import io

    stream = io.BytesIO(data)
    for _ in range(len(data) + 1):
        try:
            message = protocol.read_message(stream)
        except protocol.ProtocolError:
            return
        if message is None:
            return
        for name, value in message.fields:
            assert "\n" not in name and "\n" not in value
    raise AssertionError("read_message did not consume its input")


def test_gate_refuses_a_sha512_the_index_does_not_give(deb):
    """The index's sha512 may be what rebuilders are compared with: the
    download method's sha512 of the file must agree with it."""
    rec = Recorder()
    gate = _gate(rec, FakeVerifier("accept"), deb)
    uri = "rebuildgate+http://h/pool/hello_1.0-1_all.deb"
    gate.from_apt(protocol.Message(600, "URI Acquire", [("URI", uri), ("Filename", str(deb["path"])),
                                                        ("Expected-SHA256", deb["sha"]),
                                                        ("Expected-SHA512", "a" * 128)]))
    gate.from_inner(protocol.Message(201, "URI Done", [("URI", "http://h/pool/hello_1.0-1_all.deb"),
                                                       ("Filename", str(deb["path"])), ("SHA256-Hash", deb["sha"]),
                                                       ("SHA512-Hash", "b" * 128)]))
    [answer] = rec.wait_for(400)
    assert "has sha512 " + "b" * 32 in answer.get("Message") and "index says " + "a" * 32 in answer.get("Message")
