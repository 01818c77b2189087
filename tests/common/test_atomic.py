"""The one atomic-write helper: whole old or whole new content, never a stray temporary file."""

from __future__ import annotations

import os
import stat

import pytest

from rebuildgate import atomic
from rebuildgate.atomic import write_atomic
from tests.support.disk import full_directory


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
