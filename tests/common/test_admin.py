"""rebuildgate enable / disable / init / --version, against throw-away roots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rebuildgate.cli import main

LIST = ("deb http://deb.debian.org/debian bookworm main  # the archive\n"
        "# deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb [arch=amd64 signed-by=/k.gpg] https://security.debian.org/debian-security bookworm-security main\n"
        "deb-src http://deb.debian.org/debian bookworm main\n"
        "deb tor+http://onion.example/debian bookworm main\n")
SOURCES = ("Types: deb\nURIs: http://mirror.example/debian\n  file:/srv/mirror\nSuites: bookworm\n"
           "Components: main\n# URIs: http://commented.example/\n\nTypes: deb\nURIs: https://other.example/x\n"
           "Suites: stable\n")


@pytest.fixture
def root(tmp_path: Path, tmp_keys) -> Path:
    etc = tmp_path / "etc/apt/sources.list.d"
    etc.mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text(LIST)
    (etc / "extra.sources").write_text(SOURCES)
    (etc / "extra.sources").chmod(0o640)
    methods = tmp_path / "usr/lib/apt/methods"
    methods.mkdir(parents=True)
    for scheme in ("http", "https", "file"):
        (methods / f"rebuildgate+{scheme}").touch()
    key = tmp_keys("ed25519", "rb1")
    assert main(["init", "--policy", str(tmp_path / "etc/rebuildgate/policy.toml"), "--rebuilder", "rb1",
                 "https://rb.example/debian", str(key.public_pem)]) == 0
    return tmp_path


def test_enable_all_switches_what_the_method_wraps_and_nothing_else(root: Path, capsys) -> None:
    assert main(["enable", "--all", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb rebuildgate+http://deb.debian.org/debian bookworm main  # the archive\n"
        "# deb http://deb.debian.org/debian bookworm-updates main\n"
        "deb [arch=amd64 signed-by=/k.gpg] rebuildgate+https://security.debian.org/debian-security "
        "bookworm-security main\n"
        "deb-src rebuildgate+http://deb.debian.org/debian bookworm main\n"
        "deb tor+http://onion.example/debian bookworm main\n")
    assert "skipped" in out and "not tor+http" in out
    sources = root / "etc/apt/sources.list.d/extra.sources"
    assert sources.read_text() == SOURCES.replace("http://mirror", "rebuildgate+http://mirror").replace(
        "  file:/srv", "  rebuildgate+file:/srv").replace("https://other", "rebuildgate+https://other")
    assert sources.stat().st_mode & 0o777 == 0o640
    backups = list((root / "var/lib/rebuildgate/sources-backup").glob("*/etc/apt/sources.list"))
    assert [b.read_text() for b in backups] == [LIST]
    # idempotent, and disable gives back the very same files
    assert main(["enable", "--all", "--root", str(root)]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert main(["disable", "--all", "--root", str(root)]) == 0
    assert (root / "etc/apt/sources.list").read_text() == LIST and sources.read_text() == SOURCES


def test_enable_by_pattern_and_dry_run(root: Path, capsys) -> None:
    assert main(["enable", "--dry-run", "--root", str(root), "security.debian.org/*", "nothing.example"]) == 0
    captured = capsys.readouterr()
    assert "+deb [arch=amd64 signed-by=/k.gpg] rebuildgate+https://security.debian.org" in captured.out
    assert "no entry matches 'nothing.example'" in captured.err
    assert (root / "etc/apt/sources.list").read_text() == LIST
    assert main(["enable", "--root", str(root), "https://mirror.example/debian/"]) == 0
    assert "URIs: rebuildgate+http://mirror.example/debian\n  file:/srv" in (
        root / "etc/apt/sources.list.d/extra.sources").read_text()


def test_enable_needs_a_policy_that_loads_and_the_method(root: Path, capsys) -> None:
    policy = root / "etc/rebuildgate/policy.toml"
    policy.write_text(policy.read_text() + "threshhold = 1\n")
    assert main(["enable", "--all", "--root", str(root)]) == 2
    assert "policy error" in capsys.readouterr().err
    assert (root / "etc/apt/sources.list").read_text() == LIST
    policy.write_text(policy.read_text().replace("threshhold = 1\n", ""))
    (root / "usr/lib/apt/methods/rebuildgate+file").unlink()
    assert main(["enable", "--all", "--root", str(root)]) == 2
    assert "rebuildgate+file is not installed" in capsys.readouterr().err
    assert main(["enable", "--root", str(root)]) == 2  # neither patterns nor --all


def test_init_refuses_to_write_a_policy_that_does_not_load(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    target = tmp_path / "etc/policy.toml"
    assert main(["init", "--policy", str(target), "--rebuilder", "rb1", "https://x.example", str(bad)]) == 2
    assert "does not load, nothing was installed" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "etc/keys/rb1.pem").exists()


def test_init_asks_when_interactive(tmp_path: Path, tmp_keys, monkeypatch, capsys) -> None:
    import io

    key = tmp_keys("ed25519", "a")
    answers = io.StringIO(f"rba\nfile:///srv/evidence\n{key.public_pem}\n\nn\n1\naudit\n")
    monkeypatch.setattr(sys, "stdin", answers)
    target = tmp_path / "p/policy.toml"
    assert main(["init", "--interactive", "--policy", str(target)]) == 0
    text = target.read_text()
    assert 'name = "rba"' in text and 'mode = "audit"' in text and "threshold = 1" in text
    assert main(["init", "--policy", str(target), "--rebuilder", "x", "https://x", str(key.public_pem)]) == 2


def test_version_names_every_library() -> None:
    out = subprocess.run([sys.executable, "-m", "rebuildgate.cli", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("rebuildgate 0.1.0 ")
    for name in ("securesystemslib", "cryptography", "cffi", "python-gnupg", "python-apt", "OpenSSL"):
        assert name in out
