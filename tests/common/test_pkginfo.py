"""Reading what a package file says it is, with bounds: a .deb is an attacker's file until judged."""

from __future__ import annotations

import io
import resource
import tarfile
from pathlib import Path

import pytest

from rebuildgate.errors import PackageError
from rebuildgate.pkginfo import MAX_CONTROL_BYTES, read_deb
from tests.support.packages import build_deb


def ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += [header, data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def control_tar(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CONTROL = b"Package: hello\nVersion: 1:1.0-1\nArchitecture: all\nSource: hello-src (1.0-1)\n"


@pytest.mark.parametrize("mode,suffix", [("w:gz", ".gz"), ("w:xz", ".xz"), ("w", "")])
def test_control_files_in_every_compression_dpkg_writes(tmp_path, mode, suffix) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(ar([("debian-binary", b"2.0\n"), (f"control.tar{suffix}", control_tar({"./control": CONTROL}, mode)),
                        ("data.tar.gz", control_tar({}))]))
    art = read_deb(deb, digests=("ab" * 32, None))
    assert (art.name, art.version, art.source, art.arch, art.filename) == (
        "hello", "1:1.0-1", "hello-src", "all", "hello_1.0-1_all.deb")


def test_a_real_deb_reads_as_before(tmp_path) -> None:
    deb = build_deb(tmp_path, "libfoo1", "2:3.4-5", source="foo (3.4-5)")
    art = read_deb(deb)
    assert (art.name, art.version, art.source) == ("libfoo1", "2:3.4-5", "foo")


@pytest.mark.parametrize("where", ["control", "before-control"])
def test_a_decompression_bomb_is_refused_before_it_unpacks(tmp_path, where) -> None:
    huge = b"\0" * (200 << 20)  # 200 MiB of zeros: about 200 KiB gzipped
    files = {"./control": huge} if where == "control" else {"./postinst": huge, "./control": CONTROL}
    deb = tmp_path / "bomb.deb"
    deb.write_bytes(ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control_tar(files)),
                        ("data.tar.gz", control_tar({}))]))
    assert deb.stat().st_size < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PackageError, match=f"bytes \\(at most {MAX_CONTROL_BYTES}\\); refused"):
        read_deb(deb, digests=("ab" * 32, None))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: never unpacked


def test_an_oversized_control_member_is_refused_unread(tmp_path) -> None:
    deb = tmp_path / "big.deb"
    deb.write_bytes(ar([("debian-binary", b"2.0\n"), ("control.tar", b"\0" * (MAX_CONTROL_BYTES + 1))]))
    with pytest.raises(PackageError, match="control.tar member is"):
        read_deb(deb, digests=("ab" * 32, None))


@pytest.mark.parametrize("data", [b"!<arch>\n", b"!<arch>\n" + b"x" * 60, b"!<arch>\ncontrol.tar.gz   garbage"])
def test_broken_archives_are_package_errors(tmp_path, data) -> None:
    deb = tmp_path / "broken.deb"
    deb.write_bytes(data)
    with pytest.raises(PackageError):
        read_deb(deb, digests=("ab" * 32, None))
