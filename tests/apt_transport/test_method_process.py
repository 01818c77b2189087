"""The method as a process: protocol hygiene, no busy loops, no hangs.

These drive ``rebuildgate+file`` / ``+http`` directly (methodproc.py), with a
timeout on every read, so a method that stops answering fails the test.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebuildgate.apt.install import private_methods_dir
from tests.apt_transport.harness import method_executable, shared_tmpdir
from tests.apt_transport.methodproc import MethodProcess, cpu_seconds, descendants
from tests.apt_transport.world import World

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def setup(world: World):
    """A file:// repo with one attested package and a policy; the method's config items."""
    hello = world.package("hello", "2:1.0-1")  # no apt cache here: evidence by binary name
    repo = world.repo([hello], serve=False)
    rb = world.rebuilder("rb0", serve=False)
    world.attest(rb, hello)
    methods = private_methods_dir(world.base / "methods", method_executable())
    archives = world.base / "archives"
    (archives / "partial").mkdir(parents=True)
    items = [("Dir::Bin::Methods", str(methods)), ("Dir::Cache::Archives", str(archives)),
             ("Rebuildgate::Policy", str(world.policy([rb], threshold=1)))]
    uri = f"rebuildgate+file://{repo.directory}/{hello.filename}"
    return {"hello": hello, "methods": methods, "items": items, "uri": uri,
            "dest": str(archives / "partial" / "hello_2%3a1.0-1_all.deb"), "world": world}


def acquire_hello(m: MethodProcess, s: dict, **fields: str) -> None:
    m.acquire(s["uri"], s["dest"], Expected_SHA256=s["hello"].sha256, **fields)


def test_accepts_and_exits_when_stdin_closes(setup):
    m = MethodProcess(setup["methods"], "rebuildgate+file")
    try:
        caps = m.next()
        assert caps.code == 100 and caps.get("Send-Config") == "true" and caps.get("Pipeline") == "true"
        m.configure(setup["items"])
        acquire_hello(m, setup)
        done = m.until({201, 400})
        assert done.code == 201, done
        pids = descendants(m.proc.pid)
        assert len(pids) == 3  # the launcher script, the method and apt's file method
        m.close_stdin()
        assert m.wait(10) == 0
        time.sleep(0.2)
        assert not any(Path(f"/proc/{p}").exists() for p in pids[1:]), "inner method left behind"
    finally:
        if m.proc.poll() is None:
            m.kill()


def test_idle_method_uses_no_cpu(setup):
    m = MethodProcess(setup["methods"], "rebuildgate+http")
    try:
        m.next()
        m.configure(setup["items"])
        time.sleep(1.0)  # start-up done
        pids = descendants(m.proc.pid)
        before = cpu_seconds(pids)
        time.sleep(3.0)
        used = cpu_seconds(pids) - before
        assert used < 0.05, f"idle method and inner method used {used:.2f}s CPU in 3s"
    finally:
        m.kill()


def test_sigint_from_apt_ends_it_quietly(setup):
    m = MethodProcess(setup["methods"], "rebuildgate+http")
    m.next()
    m.configure(setup["items"])
    time.sleep(0.5)
    pids = descendants(m.proc.pid)
    os.kill(m.proc.pid, signal.SIGINT)  # what apt does when it is done with a method
    assert m.wait(10) == 0
    time.sleep(0.3)
    assert b"Traceback" not in m.stderr and b"KeyboardInterrupt" not in m.stderr
    assert not any(Path(f"/proc/{p}").exists() for p in pids[1:])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stopped_at_any_moment_of_start_up_it_leaves_quietly(setup, signum):
    """apt stops the instance it started only to read the capabilities as soon
    as it has them (it closes the pipes, sends SIGINT and waits), wherever the
    rest of the start-up is: never a traceback in apt's output, never a
    failing exit status."""
    for delay in (0.0, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.3):
        m = MethodProcess(setup["methods"], "rebuildgate+http")
        try:
            assert m.next().code == 100
            time.sleep(delay)
            m.close_stdin()
            os.kill(m.proc.pid, signum)
            assert m.wait(10) == 0, f"exit status after a stop {delay}s into start-up"
            time.sleep(0.1)  # stderr read to its end
            assert m.stderr == b"", f"stop {delay}s into start-up printed {m.stderr[:300]!r}"
        finally:
            if m.proc.poll() is None:
                m.kill()


def test_inner_method_dying_fails_open_downloads(setup, world: World):
    """apt's method crashes mid-transfer: every open and later download gets a 400."""
    methods = world.base / "brokenmethods"
    methods.mkdir()
    (methods / "rebuildgate+file").symlink_to(setup["methods"] / "rebuildgate+file")
    fake = methods / "file"
    fake.write_text("#!/bin/sh\nprintf '100 Capabilities\\nVersion: 1.0\\nSend-Config: true\\n\\n'\n"
                    "while read line; do case \"$line\" in '600 '*) exit 3;; esac; done\n")
    fake.chmod(0o755)
    items = [("Dir::Bin::Methods", str(methods))] + setup["items"][1:]
    m = MethodProcess(methods, "rebuildgate+file")
    try:
        m.next()
        m.configure(items)
        acquire_hello(m, setup)
        failure = m.until({201, 400})
        assert failure.code == 400 and "exited unexpectedly" in failure.get("Message")
        m.acquire(setup["uri"] + "?again", setup["dest"])
        again = m.until({400})
        assert "exited unexpectedly" in again.get("Message")
        m.close_stdin()
        assert m.wait(10) == 0
    finally:
        if m.proc.poll() is None:
            m.kill()


@pytest.mark.parametrize("access, expected", [("rebuildgate", "use rebuildgate+http://"),
                                              ("rebuildgate+nosuch", "cannot start apt's method")])
def test_unusable_inner_scheme_fails_every_download(setup, access: str, expected: str):
    methods: Path = setup["methods"]
    if not (methods / access).exists():
        (methods / access).symlink_to("rebuildgate")
    m = MethodProcess(methods, access)
    try:
        assert m.next().code == 100
        m.configure(setup["items"])
        m.acquire("x://host/Release", "/tmp/nonexistent/Release")
        failure = m.until({400})
        assert expected in failure.get("Message")
        m.close_stdin()
        assert m.wait(10) == 0
    finally:
        if m.proc.poll() is None:
            m.kill()


def test_garbage_from_apt_gives_general_failure_and_exit(setup):
    m = MethodProcess(setup["methods"], "rebuildgate+file")
    try:
        m.next()
        m.send_raw(b"this is not a message\n\n")
        failure = m.until({401})
        assert "unreadable message from apt" in failure.get("Message")
        assert m.wait(10) == 100
    finally:
        if m.proc.poll() is None:
            m.kill()


_names = st.sampled_from(["Rebuildgate::Policy", "Rebuildgate::Debug", "APT::Sandbox::User", "Dir::Bin::Methods",
                          "Dir::Cache::Archives", "Acquire::http::Proxy", "Debug::NoDropPrivs", "Foo::Bar::",
                          "Rebuildgate::X", "", "::", "Dir"])
_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.lists(st.tuples(_names, _values), max_size=6))
def test_any_config_items_get_a_clean_answer(setup, extra):
    """Whatever items apt sends, a package download gets exactly one answer
    (accepted only if the configuration still says so), on one line."""
    m = MethodProcess(setup["methods"], "rebuildgate+file")
    try:
        m.next()
        items = setup["items"] + [(k, v) for k, v in extra]
        m.send(601, "Configuration", [("Config-Item", f"{_q(k)}={_q(v)}") for k, v in items])
        acquire_hello(m, setup)
        answer = m.until({201, 400}, uri=setup["uri"])
        for _name, value in answer.fields:
            assert "\n" not in value
        if answer.code == 201:
            assert not any(k.lower().startswith("rebuildgate::") and k.lower() not in
                           ("rebuildgate::policy", "rebuildgate::debug") for k, _ in extra)
        m.close_stdin()
        assert m.wait(10) == 0
    finally:
        if m.proc.poll() is None:
            m.kill()


def _q(text: str) -> str:
    """apt's QuoteString for config items: %, =, ", newline and non-printables as %xx."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if byte <= 0x20 or byte >= 0x7F or ch in '%="\n':
            out.append(f"%{byte:02x}")
        else:
            out.append(ch)
    return "".join(out)


def test_unknown_codes_and_huge_fields_do_not_break_the_method(setup):
    """Messages apt does not send today, and absurdly long fields, still get
    one-line answers; the next real download works."""
    m = MethodProcess(setup["methods"], "rebuildgate+file")
    try:
        m.next()
        m.configure(setup["items"])
        m.send(777, "Something New", [("Foo", "bar")])
        m.acquire(setup["uri"], setup["dest"], Expected_SHA256="a" * 64, X_Padding="x" * 200_000)
        answer = m.until({201, 400}, uri=setup["uri"])
        assert answer.code == 400 and all("\n" not in v and len(v) < 5000 for _, v in answer.fields), answer
        acquire_hello(m, setup)
        assert m.until({201, 400}, uri=setup["uri"]).code == 201
        m.close_stdin()
        assert m.wait(10) == 0
    finally:
        if m.proc.poll() is None:
            m.kill()


def test_stdin_closed_mid_transfer_ends_everything(setup):
    """apt goes away while a download is being verified: the method and its
    inner method exit promptly, whatever was in flight."""
    m = MethodProcess(setup["methods"], "rebuildgate+file")
    try:
        m.next()
        m.configure(setup["items"])
        pids = descendants(m.proc.pid)
        acquire_hello(m, setup)
        m.close_stdin()
        assert m.wait(10) == 0
        time.sleep(0.2)
        assert not any(Path(f"/proc/{p}").exists() for p in descendants(m.proc.pid)[1:] + pids[1:])
    finally:
        if m.proc.poll() is None:
            m.kill()
