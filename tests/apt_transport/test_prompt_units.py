"""The pre-prompt hook's parts: apt's JSON hook protocol, its failures, its launcher."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading

import pytest

from rebuildgate.apt import jsonhook, prompt, prompt_entry
from rebuildgate.apt.install import install_hook

HELLO = b'{"jsonrpc":"2.0","method":"org.debian.apt.hooks.hello","id":0,"params":{"versions":["0.1","0.2"]}}\n\n'
BYE = b'{"jsonrpc":"2.0","method":"org.debian.apt.hooks.bye","params":{}}\n\n'


def notification(method: str = "install.pre-prompt", packages: list | None = None) -> bytes:
    """A notification as apt 2.6.2 wrote it here (one package: alpha 1.0-1, arch all)."""
    if packages is None:
        packages = [{"id": 0, "name": "alpha", "architecture": "amd64", "mode": "install", "automatic": False,
                     "versions": {"candidate": {"id": 0, "version": "1.0-1", "architecture": "all", "pin": 500,
                                                "origins": [{"site": ""}]},
                                  "install": {"id": 0, "version": "1.0-1", "architecture": "all", "pin": 500,
                                              "origins": [{"site": ""}]}}}]
    params = {"command": "install", "search-terms": ["alpha"], "unknown-packages": [], "packages": packages}
    return json.dumps({"jsonrpc": "2.0", "method": f"org.debian.apt.hooks.{method}",
                       "params": params}).encode() + b"\n\n"


def converse(messages: bytes, monkeypatch=None) -> tuple[int, str, bytes]:
    """Run one hook session against a fake apt; returns (exit status, what it printed, its answer)."""
    apt_end, hook_end = socket.socketpair()
    apt_end.sendall(messages)
    apt_end.shutdown(socket.SHUT_WR)
    out = io.StringIO()
    status = prompt_entry.session({"APT_HOOK_SOCKET": str(hook_end.detach())}, out)
    answer = b""
    while chunk := apt_end.recv(65536):
        answer += chunk
    apt_end.close()
    return status, out.getvalue(), answer


def test_hello_is_answered_with_a_version_apt_offered():
    status, printed, answer = converse(HELLO + notification("install.statistics") + BYE)
    assert (status, printed) == (0, "")
    assert json.loads(answer) == {"jsonrpc": "2.0", "id": 0, "result": {"version": "0.2"}}


def test_a_hello_without_a_known_version_gets_an_error_reply_and_only_a_warning():
    hello = HELLO.replace(b'["0.1","0.2"]', b'["9.0"]')
    status, printed, answer = converse(hello + BYE)
    assert status == 0
    assert json.loads(answer)["error"]["message"] == "rebuildgate speaks 0.2, 0.1"
    assert printed == ("W: rebuildgate: apt offers hook protocol ['9.0'], rebuildgate speaks ['0.2', '0.1']; "
                       "the download check decides\n")


@pytest.mark.parametrize("garbage", [b"not json\n\n", b'{"id": 3}\n\n', b""])
def test_input_apt_would_never_send_is_one_warning(garbage: bytes):
    status, printed, _ = converse(garbage)
    assert status == 0 and printed.startswith("W: rebuildgate: ") and printed.count("\n") == 1
    assert printed.endswith("; the download check decides\n")


def test_removal_only_is_not_judged(monkeypatch):
    monkeypatch.setattr(prompt, "read_settings", lambda: pytest.fail("a removal must not even load settings"))
    removal = [{"id": 0, "name": "alpha", "architecture": "amd64", "mode": "deinstall", "automatic": False,
                "versions": {"current": {"id": 0, "version": "1.0-1", "architecture": "all", "pin": 100,
                                         "origins": []}}}]
    assert converse(HELLO + notification(packages=removal) + BYE)[:2] == (0, "")


def test_a_crash_in_the_check_is_one_warning_and_apt_goes_on(monkeypatch):
    def crash(*_a, **_k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(prompt, "read_settings", lambda: prompt.Settings(None, False, None, None))
    monkeypatch.setattr(prompt, "judge", crash)
    status, printed, _ = converse(HELLO + notification() + BYE)
    assert status == 0
    assert printed == ("W: rebuildgate: internal error in the pre-prompt check: RuntimeError: boom second line; "
                       "the download check decides\n")


def test_the_hook_keeps_its_own_deadline(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(prompt, "read_settings", lambda: prompt.Settings(None, False, None, 0.3))
    monkeypatch.setattr(prompt, "judge", lambda *a, **k: release.wait(30))
    status, printed, _ = converse(HELLO + notification() + BYE)
    release.set()
    assert status == 0
    assert printed == ("W: rebuildgate: no verdict before download within the hook's time limit for 1 package(s) "
                       "(rebuilders slow or unreachable); the download check decides\n")


def test_installs_lists_what_apt_will_fetch():
    note = jsonhook.parse(notification())
    assert jsonhook.installs(note.params) == [jsonhook.Install("alpha", "amd64", "1.0-1", 0)]
    broken = [{"name": "x", "mode": "install", "versions": {"install": {"version": "1"}}}]
    with pytest.raises(jsonhook.ProtocolError, match="without name, architecture or version id"):
        jsonhook.installs({"packages": broken})


def test_not_run_by_apt_is_one_warning():
    out = io.StringIO()
    assert prompt_entry.session({}, out) == 0
    assert out.getvalue() == ("W: rebuildgate: APT_HOOK_SOCKET is not set: run by apt through AptCli::Hooks only; "
                              "the download check decides\n")


def test_prompt_launcher_without_its_program_warns_and_lets_apt_go_on(tmp_path):
    _hook, snippet, launcher, _warmup = install_hook(tmp_path / "hook", tmp_path / "apt.conf.d", tmp_path / "gone" / "pre",
                                            tmp_path / "gone" / "prompt")
    done = subprocess.run([str(launcher)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stderr == (f"W: rebuildgate: {tmp_path}/gone/prompt is missing, so the transaction is not checked "
                           f"before download: reinstall rebuildgate, or remove {snippet}\n")


@pytest.mark.parametrize("status, expected", [(0, 0), (10, 10), (1, 0), (137, 0)])
def test_prompt_launcher_passes_a_block_on_and_turns_a_crash_into_a_warning(tmp_path, status: int, expected: int):
    program = tmp_path / "program"
    program.write_text(f"#!/bin/sh\nexit {status}\n")
    program.chmod(0o755)
    _hook, _snippet, launcher, _warmup = install_hook(tmp_path / "hook", tmp_path / "apt.conf.d", program, program)
    done = subprocess.run([str(launcher)], capture_output=True, text=True, timeout=30)
    assert done.returncode == expected
    warned = f"W: rebuildgate: the pre-prompt check failed (exit status {status}); the download check decides\n"
    assert done.stderr == (warned if expected != status else "")


IMPORTS_OF_A_PLAIN_RUN = """
import io, os, socket, sys
apt_end, hook_end = socket.socketpair()
apt_end.sendall(sys.stdin.buffer.read())
apt_end.shutdown(socket.SHUT_WR)
before = set(sys.modules)
from rebuildgate.apt import prompt_entry
status = prompt_entry.session({"APT_HOOK_SOCKET": str(hook_end.detach())}, io.StringIO())
print(status, " ".join(sorted(set(sys.modules) - before)))
"""


def test_runs_with_nothing_to_judge_load_only_the_wire_format() -> None:
    """apt runs the hook for every notification: the three that are not the
    pre-prompt one load no library module, no socket, dataclasses or typing."""
    messages = HELLO + notification("install.statistics") + BYE
    done = subprocess.run([sys.executable, "-I", "-c", IMPORTS_OF_A_PLAIN_RUN], input=messages,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status, loaded = done.stdout.decode().split(" ", 1)
    assert status == "0"
    modules = set(loaded.split())
    assert {"rebuildgate.apt.jsonhook", "rebuildgate.apt.prompt_entry"} <= modules
    assert not modules & {"rebuildgate.apt.prompt", "rebuildgate.verify", "rebuildgate.errors", "dataclasses",
                          "typing", "asyncio"}, sorted(modules)


def test_a_message_may_arrive_in_pieces_and_blank_lines_may_hold_spaces() -> None:
    apt_end, hook_end = socket.socketpair()
    channel = jsonhook.Channel(hook_end.detach())
    pieces = [HELLO[:7], HELLO[7:-1], b" \r\n", b"\n" + notification("install.post")[:30],
              notification("install.post")[30:]]

    def feed() -> None:
        for piece in pieces:
            apt_end.sendall(piece)
        apt_end.shutdown(socket.SHUT_WR)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        assert channel.read().method == jsonhook.HELLO
        assert channel.read().method == "org.debian.apt.hooks.install.post"
        assert channel.read() is None
    finally:
        feeder.join()
        channel.close()
        apt_end.close()


def test_a_long_notification_in_many_pieces_is_read_whole() -> None:
    """A large upgrade's notification arrives in many reads; the message read is the one sent."""
    package = json.loads(notification())["params"]["packages"][0]
    big = notification(packages=[{**package, "name": f"pkg{i}"} for i in range(2000)])
    apt_end, hook_end = socket.socketpair()
    channel = jsonhook.Channel(hook_end.detach())

    def feed() -> None:
        for at in range(0, len(big), 997):
            apt_end.sendall(big[at:at + 997])
        apt_end.sendall(BYE)
        apt_end.shutdown(socket.SHUT_WR)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        note = channel.read()
        assert note == jsonhook.parse(big) and len(note.params["packages"]) == 2000
        assert channel.read().method == jsonhook.BYE
        assert channel.read() is None
    finally:
        feeder.join()
        channel.close()
        apt_end.close()
