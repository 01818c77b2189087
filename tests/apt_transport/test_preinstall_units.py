"""The pre-install hook's parts: apt's version 3 input, the origin rules, its time limit, its installation."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebuildgate.apt import preinstall
from rebuildgate.apt.hookinput import HookInput, HookInputError, PackageLine, parse
from rebuildgate.apt.install import SNIPPET_NAME, install_hook
from rebuildgate.apt.origins import GATED, MISMATCH, PLAIN, UNLISTED, origin_of
from rebuildgate.apt.records import IndexRecord

# What apt 2.6.2 wrote to a Version 3 hook here (configuration shortened).
APT_2_6_INPUT = """VERSION 3
APT::Architecture=amd64
Dir::Cache::archives=archives/
DPkg::Options::=--root=/tmp/x/target
CommandLine::AsString=/usr/bin/apt-get%20install%20hello%20/tmp/my%20dir/local_1.0-1_all.deb
Odd%3dName=a%0avalue

hello - - none < 1:1.0-1 all none /var/cache/apt/archives/hello_1%3a1.0-1_all.deb
local - - none < 1.0-1 all none /tmp/my dir/local_1.0-1_all.deb
gamma 2.0-1 amd64 same > 1.0-1 amd64 same /var/cache/apt/archives/gamma_1.0-1_amd64.deb
hello - - none < 1:1.0-1 all none **CONFIGURE**
old 2.0-1 all none > - - none **REMOVE**
"""


def test_hook_input_as_apt_2_6_writes_it():
    hook = parse(APT_2_6_INPUT)
    assert hook.config[2] == ("DPkg::Options::", "--root=/tmp/x/target")
    assert hook.config[3][1] == "/usr/bin/apt-get install hello /tmp/my dir/local_1.0-1_all.deb"
    assert hook.config[4] == ("Odd=Name", "a\nvalue")
    assert [line.path for line in hook.files] == ["/var/cache/apt/archives/hello_1%3a1.0-1_all.deb",
                                                  "/tmp/my dir/local_1.0-1_all.deb",
                                                  "/var/cache/apt/archives/gamma_1.0-1_amd64.deb"]
    assert hook.packages[2] == PackageLine("gamma", "2.0-1", "amd64", ">", "1.0-1", "amd64",
                                           "/var/cache/apt/archives/gamma_1.0-1_amd64.deb")
    assert [line.action for line in hook.packages[3:]] == ["**CONFIGURE**", "**REMOVE**"]
    assert parse("VERSION 3\nA=b\n\nx - - none < 1 all none **REMOVE**\n").files == []


@pytest.mark.parametrize("text, expected", [
    ("VERSION 2\nA=b\n\nhello - < 1.0 /x.deb\n", "apt sent 'VERSION 2', not VERSION 3: set DPkg::Tools::Options::"),
    ("/var/cache/apt/archives/hello_1.0_all.deb\n", "a file list without a VERSION line (version 1)"),
    ("", "a file list without a VERSION line"),
    ("VERSION 3\nA=b\n", "ended inside the configuration"),
    ("VERSION 3\nno equals sign\n\n", "unreadable configuration line"),
    ("VERSION 3\n\nhello 1.0 /x.deb\n", "unreadable package line from apt: 'hello 1.0 /x.deb'"),
    ("VERSION 3\n\nhello - - none ? 1.0 all none /x.deb\n", "unreadable package line"),
])
def test_hook_input_that_is_not_version_3_is_refused(text: str, expected: str):
    with pytest.raises(HookInputError) as e:
        parse(text)
    assert expected in str(e.value) and "\n" not in str(e.value)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from("VERSION 3\n=%<>-*/ab.:"), max_size=200) | st.text(max_size=200))
def test_fuzz_hook_input_is_parsed_or_refused(text: str):
    try:
        hook = parse(text)
    except HookInputError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(hook, HookInput) and all(line.path is None or line.path for line in hook.files)


SHA, OTHER = "a" * 64, "b" * 64


@pytest.mark.parametrize("records, kind, uri", [
    # the gated entry's index lists this file (a plain mirror too: apt's fallback after a refusal)
    ([IndexRecord("s", "all", SHA, "http://m/"), IndexRecord("s", "all", SHA, "rebuildgate+http://h/d/")],
     GATED, "rebuildgate+http://h/d/"),
    ([IndexRecord("s", "all", SHA, "http://m/")], PLAIN, "http://m/"),
    # a plain entry that lists the file wins over a gated one that lists other bytes (apt chose that entry)
    ([IndexRecord("s", "all", OTHER, "rebuildgate+http://h/"), IndexRecord("s", "all", SHA, "https://m/")],
     PLAIN, "https://m/"),
    ([IndexRecord("s", "all", OTHER, "rebuildgate+http://h/")], MISMATCH, "rebuildgate+http://h/"),
    ([IndexRecord("s", "all", None, "rebuildgate+http://h/")], MISMATCH, "rebuildgate+http://h/"),
    # a plain entry that lists other bytes does not make the file "plain"; dpkg's status file is no source
    ([IndexRecord("s", "all", OTHER, "http://m/"), IndexRecord("s", "all", None, None)], UNLISTED, None),
    ([], UNLISTED, None),
])
def test_origin_rules(records, kind: str, uri: str | None):
    origin = origin_of(records, SHA.upper())
    assert (origin.kind, origin.uri) == (kind, uri)
    assert origin.judged == (kind in (GATED, UNLISTED))


def test_origin_repo_is_what_the_method_gives_the_policy():
    assert origin_of([IndexRecord("s", "all", SHA, "rebuildgate+https://deb.example.org/debian/")], SHA).repo == \
        "deb.example.org/debian"
    assert origin_of([IndexRecord("s", "all", SHA, "rebuildgate+http://127.0.0.1:8080/")], SHA).repo == \
        "127.0.0.1:8080"
    assert origin_of([], SHA).repo is None


# -- never hang ---------------------------------------------------------------------------


def test_watchdog_gives_up_and_can_be_extended():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        preinstall.Watchdog(0.3).run(lambda: time.sleep(30))
    assert time.monotonic() - started < 2

    dog = preinstall.Watchdog(0.2)

    def slow() -> str:
        dog.extend(1.0)
        time.sleep(0.5)
        return "done"
    assert dog.run(slow) == "done"
    with pytest.raises(ValueError):
        preinstall.Watchdog(5).run(lambda: int("x"))


def test_hook_that_overruns_its_limit_stops_apt_with_one_line(monkeypatch, tmp_path):
    deb = tmp_path / "x_1_all.deb"
    deb.write_bytes(b"!<arch>\n")
    monkeypatch.setattr(preinstall, "MARGIN", 0.3)
    monkeypatch.setattr(preinstall, "check", lambda hook, watchdog=None: time.sleep(30))
    out = io.StringIO()
    started = time.monotonic()
    status = preinstall.run(f"VERSION 3\nA=b\n\nx - - none < 1 all none {deb}\n".encode(), out)
    assert status == preinstall.EXIT_ERROR and time.monotonic() - started < 2
    assert out.getvalue().startswith("E: rebuildgate: no verdict within the hook's time limit for 1 package(s)")
    assert out.getvalue().count("\n") == 1


def test_bad_input_and_bugs_stop_apt_with_one_line(monkeypatch, tmp_path):
    out = io.StringIO()
    assert preinstall.run(b"/var/cache/apt/archives/x.deb\n", out) == preinstall.EXIT_ERROR
    assert out.getvalue().startswith("E: rebuildgate: apt sent a file list without a VERSION line")
    assert preinstall.run(b"VERSION 3\nA=b\n\nx 1 all none > - - none **REMOVE**\n", io.StringIO()) == 0

    def crash(hook, watchdog=None):
        raise RuntimeError("boom\nsecond line")
    monkeypatch.setattr(preinstall, "check", crash)
    out = io.StringIO()
    assert preinstall.run(f"VERSION 3\n\nx - - none < 1 all none {tmp_path}/x.deb\n".encode(), out) == 2
    assert out.getvalue() == "E: rebuildgate: internal error in the pre-install check: RuntimeError: boom second line\n"


# -- installation -------------------------------------------------------------------------


def apt_config_dump(etc: Path) -> str:
    conf = etc.parent / "apt.conf"
    conf.write_text(f'Dir::Etc "{etc}";\n')
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APT_")}, "APT_CONFIG": str(conf)}
    return subprocess.run(["apt-config", "dump"], env=env, capture_output=True, text=True, check=True).stdout


def test_install_writes_the_hook_and_the_snippet_apt_reads(tmp_path):
    methods, etc = tmp_path / "methods", tmp_path / "etc"
    install = [sys.executable, "-m", "rebuildgate.apt.install", str(methods), "--with-apt-methods"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done
    assert not (methods / "rebuildgate-preinstall").exists()  # a private apt names its parts dir

    done = subprocess.run([*install, "--apt-conf-dir", str(etc / "apt.conf.d")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done
    hook = methods / "rebuildgate-preinstall"
    assert (methods / "rebuildgate+https").is_symlink() and os.access(hook, os.X_OK)
    prompt, warmup = methods / "rebuildgate-prompt", methods / "rebuildgate-warmup"
    assert (f"installed the pre-install hook {hook}, the pre-prompt hook {prompt} and the warm-up {warmup}, "
            f"run by apt through {etc / 'apt.conf.d' / SNIPPET_NAME}") in done.stdout
    dump = apt_config_dump(etc)
    assert f'DPkg::Pre-Install-Pkgs:: "{hook}";' in dump
    assert f'DPkg::Tools::Options::{hook}::Version "3";' in dump
    guarded = f"[ ! -e {prompt} ] || {prompt}"  # removing rebuildgate must not make apt's post hook fail
    assert f'AptCli::Hooks::Install:: "{guarded}";' in dump and f'AptCli::Hooks::Upgrade:: "{guarded}";' in dump
    assert os.access(prompt, os.X_OK)
    assert f'APT::Update::Post-Invoke-Success:: "[ ! -e {warmup} ] || {warmup}";' in dump
    assert os.access(warmup, os.X_OK)

    done = subprocess.run([*install, "--apt-conf-dir", str(etc), "--hook-dir", str(tmp_path / "a b")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "the hook's path may only hold letters" in done.stderr


def test_hook_launcher_without_its_program_stops_apt_with_one_line(tmp_path):
    hook, snippet, *_ = install_hook(tmp_path / "hook", tmp_path / "apt.conf.d", tmp_path / "gone" / "program",
                                          tmp_path / "gone" / "prompt")
    done = subprocess.run([str(hook)], input="VERSION 3\n\n", capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == (f"E: rebuildgate: {tmp_path}/gone/program is missing, so packages cannot be checked "
                           f"before dpkg: reinstall rebuildgate, or remove {snippet} to stop checking\n")
