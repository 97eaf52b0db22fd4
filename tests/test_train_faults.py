"""Training faults: SIGKILL at random moments (one of them inside a checkpoint write) and a full
disk during a checkpoint write. A run must resume bit-identical, and a full disk must leave the
last good checkpoint readable with a one-line error."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qt_train.checkpoint import load_checkpoint
from tests.test_train import CONFIG, REPO, sets, tensors_equal

STAGE2 = 24  # long enough that five kills land before the run ends


def _start(run: Path, resume: bool, extra: tuple[str, ...] = (), preexec=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "qt_train.train.cli", "--config", CONFIG, "--run-dir", str(run), "--no-progress",
           *sets("train.ckpt_every=1", f"train.iterations={STAGE2}", "train.eval_every=1000", *extra)]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def _temp_files(run: Path) -> list[Path]:
    return list(run.glob(".last.ckpt.*.tmp"))


def _wait_for_writes(proc: subprocess.Popen, ckpt: Path, count: int) -> None:
    """Return once ``ckpt`` was replaced ``count`` times by ``proc`` (or ``proc`` ended)."""
    seen = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    while count and proc.poll() is None:
        now = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        if now != seen:
            seen, count = now, count - 1
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_at_random_moments_and_inside_a_write_resumes_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    proc = _start(straight, resume=False)
    assert proc.wait(timeout=900) == 0, proc.stderr.read()

    killed, rng = tmp_path / "killed", random.Random(20261205)
    random_kills = write_kills = 0
    for _ in range(60):
        if random_kills >= 5 and write_kills >= 1:
            break
        proc = _start(killed, resume=(killed / "last.ckpt").exists())
        if random_kills < 5:  # after 1-3 fresh checkpoints, a random moment in an iteration
            _wait_for_writes(proc, killed / "last.ckpt", rng.randint(1, 3))
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # inside a checkpoint write: the moment its temporary file exists
            while proc.poll() is None and not _temp_files(killed):
                pass
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()
            pytest.fail("the run finished before it was killed often enough; raise STAGE2")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if random_kills < 5:
            random_kills += 1
        elif _temp_files(killed):  # the kill landed mid-write: a half-written temporary file is left
            write_kills += 1
    assert random_kills == 5 and write_kills == 1
    assert load_checkpoint(killed / "last.ckpt")["iteration"] < 3 + STAGE2

    proc = _start(killed, resume=True)
    assert proc.wait(timeout=900) == 0, proc.stderr.read()
    assert not _temp_files(killed), "the killed writer's temporary file was not cleaned up"
    a, b = load_checkpoint(straight / "last.ckpt"), load_checkpoint(killed / "last.ckpt")
    assert a["iteration"] == b["iteration"] == 3 + STAGE2
    for key in ("model", "ema", "optimizer", "bank"):
        assert tensors_equal(a[key], b[key]), f"{key} differs after {random_kills + write_kills} kills"


def _file_size_limit(limit: int):
    def preexec() -> None:  # writes past the limit fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_full_disk_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path):
    """The checkpoint grows as the bank fills; a file-size limit between the first checkpoints'
    size and the later ones' makes a later write fail part-way, as a full disk does."""
    run = tmp_path / "run"
    proc = _start(run, resume=False, preexec=_file_size_limit(300_000))
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("qt-train: error: ") and "last.ckpt" in lines[-1] and "--resume" in lines[-1], err
    assert "Traceback" not in err
    state = load_checkpoint(run / "last.ckpt")  # the content hash is checked on load
    assert 1 <= state["iteration"] < 3 + STAGE2 and not _temp_files(run)
    # with space again, the run continues from the last good checkpoint and finishes
    proc = _start(run, resume=True)
    assert proc.wait(timeout=900) == 0, proc.stderr.read()
    assert load_checkpoint(run / "last.ckpt")["iteration"] == 3 + STAGE2


def test_full_tmpfs_during_a_checkpoint_write(tmp_path):
    """The same on a real full filesystem: a 1 MB tmpfs (needs the right to mount, as root here)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mnt)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        proc = _start(mnt / "run", resume=False)
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 2 and "No space left on device" in err and "Traceback" not in err, err
        assert load_checkpoint(mnt / "run" / "last.ckpt")["iteration"] >= 1
        assert not _temp_files(mnt / "run")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
