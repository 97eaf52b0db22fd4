"""Atomic writes leave nothing half-written, clean up after killed writers, and keep the usual
permissions (artifacts staged with mkdtemp were 0700: another service user could not read them)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from qt_core.atomic import atomic_write_bytes, staged_dir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead, live = _dead_pid(), os.getppid()
    (tmp_path / f".last.ckpt.{dead}.abc.tmp").write_bytes(b"half")
    (tmp_path / f".last.ckpt.{live}.def.tmp").write_bytes(b"in progress")
    (tmp_path / f".art.partial-{dead}-xyz").mkdir()
    atomic_write_bytes(tmp_path / "last.ckpt", b"whole")
    with staged_dir(tmp_path / "art") as stage:
        (stage / "f").write_text("x")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f".last.ckpt.{live}.def.tmp", "art", "last.ckpt"]
    assert (tmp_path / "last.ckpt").read_bytes() == b"whole"


def test_written_files_and_folders_have_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
        with staged_dir(tmp_path / "art") as stage:
            (stage / "model.xml").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "art").stat().st_mode) == 0o755


def test_a_failed_stage_leaves_the_previous_output(tmp_path):
    with staged_dir(tmp_path / "art") as stage:
        (stage / "v").write_text("1")
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "art", force=True) as stage:
        (stage / "v").write_text("2")
        raise RuntimeError("interrupted")
    assert (tmp_path / "art" / "v").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
