"""`make demo` (qt_apps/demo.py) end to end against a tiny zoo, with its budget knobs turned down.

The zoo is real: tiny qt-train runs made into entries by ``qt_apps.zoo_add`` (as tests/test_zoo.py
does) for dehaze and derain, desnow listed without a model. The demo runs as a subprocess, as
``make demo`` runs it: killed after its first stage, killed again in the middle of the training,
run to the end (it resumes both), then run once more (every stage reused from its stage.json).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_zoo import TINY_RUN

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = TINY_RUN[:2]  # model.arch and model.options of the tiny students


def _sets(items) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    """dehaze and derain: tiny qt-train runs -> python -m qt_apps.zoo_add; desnow: no model yet."""
    from qt_apps.zoo_add import main as zoo_add
    from qt_export.export import synthetic_frames
    from qt_train.train.cli import main as qt_train

    d = tmp_path_factory.mktemp("demo-zoo")
    calib = d / "calib"
    calib.mkdir()
    for i, f in enumerate(synthetic_frames(16, (96, 128), seed=3)):
        cv2.imwrite(str(calib / f"{i:02d}.png"), f)
    for task in ("dehaze", "derain"):
        assert qt_train(["--config", str(REPO / "configs" / f"{task}.yaml"), "--run-dir", str(d / task),
                         "--no-progress", *_sets(TINY_RUN)]) == 0
        assert zoo_add([task, "--checkpoint", str(d / task / "last.ckpt"), "--calib", str(calib), "--zoo",
                        str(d / "zoo"), "--size", "128x96", "--speed-size", "128x96", "--calib-frames", "12", "--gate-frames", "3",
                        "--eval-limit", "2", "--eval-size", "96", "--speed-frames", "4", "--make", f"make-{task}"]) == 0
    index = json.loads((d / "zoo" / "index.json").read_text())
    index["tasks"]["desnow"] = {"make": "qt-train --config configs/desnow.yaml && make-desnow"}
    (d / "zoo" / "index.json").write_text(json.dumps(index))
    return d / "zoo"


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory) -> Path:
    """Stand-ins for ../shared/data/real: photos of different sizes and formats, and a file that is not one."""
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    for rel, (h, w) in {"hazy/a.png": (60, 80), "hazy/b.jpg": (72, 56), "rainy/c.png": (64, 64),
                        "snowy/d.png": (48, 48)}.items():
        (root / rel).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(root / rel), (rng.random((h, w, 3)) * 255).astype(np.uint8))
    (root / "hazy" / "notes.txt").write_text("not a photo")
    return root


def knobs(real: Path) -> list[str]:
    return ["--tasks", "dehaze,derain,desnow", "--frames", "6", "--size", "96x64", "--real", str(real),
            "--unlabelled", "10", "--frame-size", "96", "--iterations", "4", "--patch", "96", "--batch", "2",
            "--eval-size", "96", "--eval-limit", "2", "--gate-frames", "2", "--train-set", "data.n_train=6"]


def _env(zoo: Path) -> dict[str, str]:
    return {**os.environ, "QT_ZOO": str(zoo), "OPENVINO_TELEMETRY_OPT_OUT": "1"}


def _demo(out: Path, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qt_apps.demo", "--out", str(out), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=900)


def _demo_killed_when(out: Path, args: list[str], env: dict[str, str], cwd: Path, appears: Path) -> None:
    """Start the demo and SIGKILL it (and the tool it is running) as soon as ``appears`` exists."""
    proc = subprocess.Popen([sys.executable, "-m", "qt_apps.demo", "--out", str(out), *args], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not appears.exists():
            assert proc.poll() is None, f"the demo ended (exit {proc.returncode}) before {appears} appeared"
            assert time.monotonic() < deadline, f"{appears} never appeared"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: the demo and its running tool
        proc.wait()


def _lines(stdout: str) -> dict[str, str]:
    """stage name -> its status column ("reused", "skipped", or the seconds it ran)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("stage ") or line.startswith("total"):
            break
        name, status = line[:18].strip(), line[19:27].strip()
        if name:
            rows[name] = status
    return rows


STAGES = ["clips", "restore dehaze", "restore derain", "photos dehaze", "photos derain", "frames", "finetune",
          "evaluate", "export", "run", "report"]


@pytest.mark.slow
def test_demo_runs_resumes_and_reuses(tiny_zoo, real_photos, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out, env, args = tmp_path / "demo", _env(tiny_zoo), knobs(real_photos)

    # 1. killed right after its first stage
    _demo_killed_when(out, args, env, cwd, out / "clips" / "stage.json")
    assert not (out / "report.html").exists()
    # 2. killed in the middle of the training (it checkpoints every iteration)
    _demo_killed_when(out, args, env, cwd, out / "train" / "finetune" / "run" / "last.ckpt")
    assert json.loads((out / "train" / "finetune" / "stage.json").read_text())["done"] is False

    # 3. to the end: the finished stages reused, the training resumed from its checkpoint
    r = _demo(out, args, env, cwd)
    assert r.returncode == 0, r.stderr
    rows = _lines(r.stdout)
    assert [s for s in rows if s != "desnow"] == STAGES, r.stdout
    assert rows["clips"] == "reused" and rows["restore dehaze"] == "reused"
    assert rows["finetune"].endswith(" s") and rows["report"].endswith(" s")
    assert "(resumed from its last checkpoint)" in next(ln for ln in r.stdout.splitlines() if ln.startswith("finetune"))
    assert rows["desnow"] == "skipped" and "has no trained model for 'desnow' yet; make one with: qt-train" in r.stdout
    report = out / "report.html"
    assert r.stdout.strip().splitlines()[-1] == f"report: {report}"
    assert not list(cwd.iterdir())  # nothing written to the current directory

    # every stage's outputs exist, as its stage.json lists them
    for folder in ("clips", "restore/dehaze", "restore/derain", "real/dehaze", "real/derain", "train/frames",
                   "train/finetune", "train/eval", "train/export", "train/run", "report"):
        record = json.loads((out / folder / "stage.json").read_text())
        assert record["done"] and record["outputs"] and record["commands"] is not None
        assert all((out / folder / f).exists() for f in record["outputs"]), folder
    for task in ("dehaze", "derain"):
        d = out / "restore" / task
        assert json.loads((d / f"{task}-restored.json").read_text())["frames_out"] == 6
        assert (d / f"{task}-restored.mp4").stat().st_size > 0 and (d / f"{task}-side-by-side.mp4").stat().st_size > 0
    assert sorted(p.name for p in (out / "real" / "dehaze" / "input").iterdir()) == ["a.png", "b.jpg"]
    assert sorted(p.name for p in (out / "real" / "dehaze" / "restored").iterdir()) == ["a.png", "b.jpg"]
    assert cv2.imread(str(out / "real" / "dehaze" / "restored" / "b.jpg")).shape == (72, 56, 3)  # its own size
    assert not (out / "real" / "desnow").exists()
    assert (out / "train" / "eval" / "eval" / "results.json").is_file()
    assert json.loads((out / "train" / "export" / "dehaze-finetuned-int8" / "manifest.json").read_text())["task"] == "dehaze"
    assert json.loads((out / "train" / "run" / "dehaze-finetuned.json").read_text())["frames_out"] == 6
    page = report.read_text()
    assert page.count("<video") == 3 and "a.png" in page and "dehaze-finetuned-int8" in page
    assert "zoo-dehaze-int8" in page  # the zoo entries' own gate reports
    timings = json.loads((out / "timings.json").read_text())
    assert [s["stage"] for s in timings["stages"]] == ["desnow", *STAGES]
    assert not (out / ".partial").exists() or not list((out / ".partial").iterdir())

    # 4. once more: every stage reused, nothing rebuilt (the report file untouched)
    before = report.stat().st_mtime_ns
    r = _demo(out, args, env, cwd)
    assert r.returncode == 0, r.stderr
    rows = _lines(r.stdout)
    assert {s: rows[s] for s in STAGES} == dict.fromkeys(STAGES, "reused"), r.stdout
    assert report.stat().st_mtime_ns == before
    timings = json.loads((out / "timings.json").read_text())
    assert {s["status"] for s in timings["stages"]} == {"reused", "skipped"}
    assert all(s["built_s"] > 0 for s in timings["stages"] if s["status"] == "reused")

    # a changed setting reruns the stages that depend on it, and only those
    r = _demo(out, [*args, "--eval-limit", "3"], env, cwd)
    assert r.returncode == 0, r.stderr
    rows = _lines(r.stdout)
    assert [s for s in STAGES if rows[s] != "reused"] == ["evaluate", "report"], r.stdout


@pytest.mark.slow
def test_without_a_zoo_dehaze_the_demo_trains_a_base_model(tiny_zoo, real_photos, tmp_path):
    """The fallback: no trained zoo:dehaze, so the training stage trains a small base model, then QualiTeacher."""
    zoo = tmp_path / "zoo"
    index = json.loads((tiny_zoo / "index.json").read_text())
    index["tasks"]["dehaze"] = {"make": "make-dehaze"}
    zoo.mkdir()
    (zoo / "index.json").write_text(json.dumps(index))
    (zoo / "derain").symlink_to(tiny_zoo / "derain")
    args = [*knobs(real_photos), "--tasks", "dehaze,derain", "--base-iterations", "2", *(a for kv in TINY_MODEL for a in ("--train-set", kv))]
    r = _demo(tmp_path / "demo", args, _env(zoo), tmp_path)
    assert r.returncode == 0, r.stderr
    rows = _lines(r.stdout)
    assert rows["dehaze"] == "skipped" and "restore dehaze" not in rows and rows["restore derain"].endswith(" s")
    assert "a base model (2 iterations), then QualiTeacher" in r.stdout
    assert rows["run"].endswith(" s") and (tmp_path / "demo" / "report.html").is_file()


def test_bad_options_are_one_line_errors(tmp_path):
    for args, needle in ((["--tasks", "fog"], "argument --tasks: 'fog': choose from dehaze"),
                         (["--size", "big"], "expected WxH"),
                         (["--unlabelled", "5"], "--unlabelled >= --gate-frames + 8"),
                         (["--claim", str(tmp_path / "none.json")], "no such file")):
        r = subprocess.run([sys.executable, "-m", "qt_apps.demo", "--out", str(tmp_path / "d"), *args],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith("qt-demo: error: ") and needle in r.stderr, r.stderr
