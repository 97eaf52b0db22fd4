"""qt-data make / preview end to end, run as a user would, plus the task configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qt_core.config import ConfigError
from qt_train.data.cli import main
from qt_train.data.io import read_image
from qt_train.schema import TASK_NAMES, degradation_params, load_run_config

REPO = Path(__file__).resolve().parents[1]


def test_make_writes_paired_set_with_manifest(tmp_path):
    out = tmp_path / "set"
    assert main(["make", "--task", "dehaze", "--domain", "realistic", "--n", "5", "--size", "64", "--out", str(out)]) == 0
    lq = sorted(p.name for p in (out / "lq").iterdir())
    gt = sorted(p.name for p in (out / "gt").iterdir())
    assert lq == gt == [f"{i:05d}.png" for i in range(5)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "dehaze" and manifest["domain"] == "realistic" and manifest["n"] == 5
    assert [r["name"] for r in manifest["images"]] == lq and all(r["params"] for r in manifest["images"])
    assert (out / "config.yaml").is_file() and "qt-data make" in (out / "command.txt").read_text()
    a, b = read_image(out / "lq" / lq[0]), read_image(out / "gt" / lq[0])
    assert a.shape == b.shape == (64, 64, 3) and not np.allclose(a, b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


def test_make_is_reproducible_from_seed(tmp_path):
    for name in ("a", "b"):
        assert main(["make", "--task", "lowlight", "--n", "3", "--size", "48", "--seed", "7", "--out", str(tmp_path / name)]) == 0
    for i in range(3):
        for part in ("lq", "gt"):
            x = (tmp_path / "a" / part / f"{i:05d}.png").read_bytes()
            assert x == (tmp_path / "b" / part / f"{i:05d}.png").read_bytes()


def test_existing_output_is_refused_then_replaced_with_force(tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("previous result")
    code = main(["make", "--task", "derain", "--n", "2", "--size", "32", "--out", str(out)])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "previous result"
    assert main(["make", "--task", "derain", "--n", "2", "--size", "32", "--out", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()


def test_interrupted_make_leaves_previous_set_intact(tmp_path, monkeypatch):
    out = tmp_path / "set"
    assert main(["make", "--task", "desnow", "--n", "2", "--size", "32", "--out", str(out)]) == 0
    before = (out / "manifest.json").read_bytes()
    import qt_train.data.io as io

    calls = {"n": 0}
    real_write = io.write_image

    def failing_write(path, img, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_write(path, img, **kw)

    monkeypatch.setattr(io, "write_image", failing_write)
    assert main(["make", "--task", "desnow", "--n", "20", "--size", "32", "--out", str(out), "--force"]) == 130
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--task", "defog"], "unknown task 'defog'"),
        (["--task", "dehaze", "--domain", "real"], "unknown domain 'real'"),
        (["--task", "dehaze", "--set", "data.sise=64"], "did you mean 'size'"),
        (["--task", "dehaze", "--set", "degradation.no_such_knob=1"], "unknown key 'degradation.no_such_knob'"),
        (["--task", "dehaze", "--clean", "folder"], "--clean-folder"),
        (["--task", "dehaze", "--n", "0"], "at least 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, args, fragment):
    code = main(["make", "--out", str(tmp_path / "x"), "--n", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_configs_load_strictly(task):
    path = REPO / "configs" / f"{task}.yaml"
    cfg = load_run_config(path)
    assert cfg.task == task
    degradation_params(cfg, source=str(path))


def test_config_degradation_override_reaches_the_engine(tmp_path):
    cfg = load_run_config(REPO / "configs" / "dehaze.yaml", ["seed=3"])
    assert cfg.seed == 3
    with pytest.raises(ConfigError, match="dehaze.yaml"):
        load_run_config(REPO / "configs" / "dehaze.yaml", task="derain")


def test_preview_writes_a_grid_per_task_and_domain(tmp_path):
    assert main(["preview", "--out", str(tmp_path), "--rows", "2", "--size", "64"]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 10


def test_console_script_runs_in_a_fresh_interpreter(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "qt_train.data.cli", "make", "--task", "underwater", "--n", "1", "--size", "32",
         "--out", str(tmp_path / "u")], capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u"], "wrote into the current directory"
