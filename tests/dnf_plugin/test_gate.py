"""The translation layer (rebuildgate.dnf.gate) in-process, with stand-in packages.

These cover what real dnf cannot easily be made to do: a file that changes
between ``resolved()`` and ``pre_transaction()`` (dnf's own download check
gets there first), proxy spellings, unknown checksum types, and an old
in-toto that was imported anyway.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from rebuildgate.dnf.gate import Blocked, Gate, LibraryError, check_environment, dnf_proxy, package_facts
from rebuildgate.policy import load_policy
from tests.support.packages import build_rpm
from tests.support.policy import write_policy
from tests.support.rebuilders import FakeRebuilder, make_rebuilders


@dataclass
class FakePkg:
    """The attributes of a hawkey package the plugin reads, nothing more."""

    name: str
    version: str
    release: str
    path: Path
    epoch: int = 0
    arch: str = "noarch"
    sourcerpm: str | None = None
    reponame: str = "gated"
    chksum: tuple[str, bytes] | None = None

    def __str__(self) -> str:
        evr = f"{self.epoch}:{self.version}" if self.epoch else self.version
        return f"{self.name}-{evr}-{self.release}.{self.arch}"

    def localPkg(self) -> str:  # noqa: N802 - dnf's name
        return str(self.path)


def _pkg(tmp_path: Path, name: str, content: bytes, checksum: str | None = "sha256", **kw) -> FakePkg:
    """A stand-in package whose file is a real rpm (built with *content* as its payload), since
    ``pre_transaction()`` reads every file's header; the attributes are what an index could say."""
    built = build_rpm(tmp_path / "built" / hashlib.sha256(name.encode() + content).hexdigest()[:16], name, "1.0",
                      payload=content)
    path = tmp_path / f"{name}-1.0-1.noarch.rpm"
    path.write_bytes(built.read_bytes())
    data = path.read_bytes()
    chksum = (checksum, hashlib.new(checksum, data).digest()) if checksum else None
    return FakePkg(name, "1.0", "1", path, chksum=chksum, **kw)


@pytest.fixture
def rebuilders(tmp_path: Path) -> list[FakeRebuilder]:
    return make_rebuilders(tmp_path, 2)  # file:// rebuilders: no network needed


def _gate(tmp_path: Path, rebuilders: list[FakeRebuilder], **top) -> Gate:
    arrays = {"repository": [{"name": "free", "match": ["free*"], "gate": False}]}
    path = write_policy(tmp_path / "policy.toml", [r.entry() for r in rebuilders], threshold=2,
                        arrays=arrays, **top)
    return Gate(load_policy(path))


def test_package_facts_keep_epoch_out_of_the_file_name(tmp_path: Path) -> None:
    pkg = _pkg(tmp_path, "libfoo", b"x", epoch=3, sourcerpm="foo-src-1.0-1.src.rpm")
    facts = package_facts(pkg)
    artifact = facts.artifact(facts.checksum or "")
    assert facts.nevra == "libfoo-3:1.0-1.noarch" and facts.checksum_type == "sha256"
    assert artifact.filename == "libfoo-1.0-1.noarch.rpm"
    assert artifact.version == "3:1.0-1" and artifact.upstream_version == "1.0-1"
    assert artifact.source == "foo-src" and artifact.repo == "gated"
    assert artifact.sha256 == hashlib.sha256(pkg.path.read_bytes()).hexdigest()
    local = package_facts(_pkg(tmp_path, "local", b"y", checksum=None, reponame="@commandline"))
    assert local.checksum is None and local.checksum_type is None


@pytest.mark.parametrize("proxy, user, password, expected", [
    ("", "", "", None),
    ("_none_", "", "", None),
    ("proxy.example:3128", "", "", "http://proxy.example:3128"),
    ("http://10.137.0.1:8082/", "", "", "http://10.137.0.1:8082/"),
    ("socks5h://127.0.0.1:9050", "", "", "socks5h://127.0.0.1:9050"),
    ("http://p:3128", "us er", "p@ss:w/rd", "http://us%20er:p%40ss%3Aw%2Frd@p:3128"),
    ("http://me@p:3128", "other", "x", "http://me@p:3128"),
])
def test_dnf_proxy(proxy: str, user: str, password: str, expected: str | None) -> None:
    conf = types.SimpleNamespace(proxy=proxy, proxy_username=user, proxy_password=password)
    assert dnf_proxy(conf) == expected


def test_a_file_that_changed_after_resolution_is_verified_under_its_real_hash(
        tmp_path: Path, rebuilders: list[FakeRebuilder]) -> None:
    pkg = _pkg(tmp_path, "hello", b"honest build")
    for rb in rebuilders:
        rb.publish("hello", "1.0-1", {pkg.path.name: pkg.path.read_bytes()})
    gate = _gate(tmp_path, rebuilders)
    [verdict] = gate.resolved([pkg])
    assert verdict.accepted and verdict.vote_count == 2
    assert gate.pre_transaction([pkg]) == []  # same file: nothing to verify again

    swapped = _pkg(tmp_path / "evil", "hello", b"swapped after download").path.read_bytes()
    pkg.path.write_bytes(swapped)
    with pytest.raises(Blocked) as blocked:
        gate.pre_transaction([pkg])
    message = str(blocked.value)
    assert "before installing" in message and "Nothing was installed." in message
    assert f"{pkg.path} has sha256 {hashlib.sha256(swapped).hexdigest()[:16]}" in message
    assert "rb1 (conflict)" in message and "rb2 (conflict)" in message


def test_checksums_that_cannot_name_the_file(tmp_path: Path, rebuilders: list[FakeRebuilder]) -> None:
    """md5/sha1/sha224 and types the plugin does not know are refused in a
    gated repository without asking anyone; an ungated repository does not care."""
    for rb in rebuilders:
        rb.publish("old", "1.0-1", {"old-1.0-1.noarch.rpm": b"old"})
    gate = _gate(tmp_path, rebuilders)
    for kind in ("md5", "sha1", "sha224"):
        with pytest.raises(Blocked, match=f"only a {kind} checksum"):
            gate.resolved([_pkg(tmp_path, "old", b"old", checksum=kind)])
    unknown = _pkg(tmp_path, "old", b"old", checksum="sha256")
    unknown.chksum = ("sha3-256", b"\x01" * 32)
    with pytest.raises(Blocked, match="only a sha3-256 checksum"):
        gate.resolved([unknown])
    [verdict] = gate.resolved([_pkg(tmp_path, "free", b"free", checksum="sha1", reponame="free-updates")])
    assert verdict.allowed and verdict.accepted


def test_sha512_and_local_packages_wait_for_the_file(tmp_path: Path, rebuilders: list[FakeRebuilder]) -> None:
    pkgs = [_pkg(tmp_path, "big", b"big", checksum="sha512"),
            _pkg(tmp_path, "local", b"local", checksum=None, reponame="@commandline")]
    for rb in rebuilders:
        rb.publish("big", "1.0-1", {"big-1.0-1.noarch.rpm": pkgs[0].path.read_bytes()})
    gate = _gate(tmp_path, rebuilders)
    assert gate.resolved(pkgs) == []  # nothing can be verified before download
    with pytest.raises(Blocked) as blocked:
        gate.pre_transaction(pkgs)
    assert "blocked 1 of 2 package(s) before installing" in str(blocked.value)
    assert "local-1.0-1.noarch" in str(blocked.value) and "big-1.0-1" not in str(blocked.value)


def test_audit_mode_lets_through_and_warns(tmp_path: Path, rebuilders: list[FakeRebuilder],
                                           caplog: pytest.LogCaptureFixture) -> None:
    gate = _gate(tmp_path, rebuilders, mode="audit")
    with caplog.at_level(logging.WARNING):
        [verdict] = gate.resolved([_pkg(tmp_path, "nobody", b"nobody")])
    assert verdict.allowed and not verdict.accepted and verdict.relaxed_by == "audit mode"
    assert "1 package(s) do not meet the policy but are let through (audit mode)" in caplog.text


def test_old_securesystemslib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    check_environment()  # the venv's own are fine
    old = types.ModuleType("securesystemslib")
    old.__version__ = "0.26.0"
    old.__file__ = "/usr/lib/python3/dist-packages/securesystemslib/__init__.py"
    monkeypatch.setitem(sys.modules, "securesystemslib", old)
    with pytest.raises(LibraryError, match=r"securesystemslib>=1, but Python imported 0\.26\.0 from /usr/lib/python3"):
        check_environment()
