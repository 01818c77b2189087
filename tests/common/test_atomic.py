"""write_atomic: whole content or the old one, the mode asked for, no litter."""

from __future__ import annotations

import os
import stat

import pytest

from rebuildgate import atomic
from rebuildgate.atomic import write_atomic
from tests.support.disk import full_directory


def test_writes_and_replaces_with_the_mode_asked_for(tmp_path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomic(str(target), b"second" * 1000, mode=0o600)
    assert target.read_bytes() == b"second" * 1000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"untouched")
    target = tmp_path / "doc"
    target.symlink_to(elsewhere)
    write_atomic(target, b"new")
    assert not target.is_symlink() and target.read_bytes() == b"new"
    assert elsewhere.read_bytes() == b"untouched"


def test_failure_before_the_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    target = tmp_path / "doc"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["doc"]


def test_failure_of_the_rename_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "a-directory"
    (target / "inside").mkdir(parents=True)  # a non-empty directory cannot be replaced by a file
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert sorted(os.listdir(tmp_path)) == ["a-directory"]


def test_missing_directory_is_an_error(tmp_path) -> None:
    with pytest.raises(OSError):
        write_atomic(tmp_path / "no" / "such" / "file", b"x")


def test_writes_whole_content_with_mode(tmp_path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(target, b"new content", mode=0o600)
    assert target.read_bytes() == b"new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path) -> None:
    with full_directory(tmp_path / "disk") as disk:
        target = disk / "state.json"
        with pytest.raises(OSError) as e:
            write_atomic(target, b"x" * 65536)
        assert e.value.errno == 28  # ENOSPC
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]


def test_a_failed_rename_removes_the_temporary(tmp_path, monkeypatch) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_fsyncs_file_and_directory(tmp_path, monkeypatch) -> None:
    synced = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd)))
    write_atomic(tmp_path / "f", b"data")
    assert str(tmp_path) in synced and any(p.startswith(str(tmp_path / ".f.")) for p in synced)


def test_not_durable_skips_both_flushes_but_still_replaces_whole(tmp_path, monkeypatch) -> None:
    """Cached evidence is written this way: re-verified on every use, so a
    write lost in a crash is only a miss, and two fsyncs per document cost
    more than fetching it."""
    target = tmp_path / "doc"
    target.write_bytes(b"old")

    def no_fsync(fd):
        raise AssertionError("fsync called for a write that is not durable")

    monkeypatch.setattr(atomic.os, "fsync", no_fsync)
    write_atomic(target, b"new" * 1000, durable=False)
    assert target.read_bytes() == b"new" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc"]
    with pytest.raises(AssertionError):
        write_atomic(target, b"durable")  # the default still flushes
