"""The model zoo: ``zoo:TASK`` names in qt-run, qt-export, qt-eval and qt-train's ``train.init``.

Zoos here are real folders: tiny torch-free artifacts (tests/runtime_models.py) for the resolver and
the runtime, and one entry built end to end by ``qt_apps.zoo_add`` from a real (tiny) qt-train run,
exported through the gate and evaluated. The committed zoo (qt_core/zoo) is checked as it is: every
trained entry's files match their hashes, every other entry says how to make it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from qt_core import zoo
from qt_core.hashing import sha256_file
from qt_runtime.cli import main as qt_run
from tests.runtime_models import make_onnx_artifact

REPO = Path(__file__).resolve().parents[1]
TASKS = ("dehaze", "derain", "desnow", "lowlight", "underwater")


def make_zoo(root: Path, tasks=TASKS, pending=()) -> Path:
    """A zoo folder: per task an INT8 (Q/DQ ONNX) and an FP32 (OpenVINO IR) artifact, hashed in index.json;
    ``pending`` tasks are listed with their make command only."""
    root.mkdir(parents=True, exist_ok=True)
    index = {"schema": 1, "tasks": {}}
    for task in tasks:
        make_onnx_artifact(root / task / "int8", fmt="onnx_qdq")
        make_onnx_artifact(root / task / "fp32", fmt="openvino")
        files = sorted(str(p.relative_to(root)) for p in (root / task).rglob("*") if p.is_file())
        index["tasks"][task] = {"make": f"make-{task}", "artifacts": {"int8": f"{task}/int8", "fp32": f"{task}/fp32"},
                                "default": "int8", "sha256": {f: sha256_file(root / f) for f in files}}
    for task in pending:
        index["tasks"][task] = {"make": f"qt-train --config configs/{task}.yaml && make-{task}"}
    (root / "index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    return make_zoo(tmp_path_factory.mktemp("zoo") / "zoo", tasks=("dehaze", "derain"), pending=("desnow",))


def _clip(path: Path, n: int = 12, size=(48, 64)) -> Path:
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for i in range(n):
        writer.write(np.full((h, w, 3), 12 * i, np.uint8))
    writer.release()
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------------ the resolver

def test_names_resolve_to_hash_checked_folders(tiny_zoo):
    assert zoo.resolve_artifact("zoo:dehaze", tiny_zoo) == tiny_zoo / "dehaze" / "int8"
    assert zoo.resolve_artifact("zoo:dehaze/int8", tiny_zoo) == tiny_zoo / "dehaze" / "int8"
    assert zoo.resolve_artifact("zoo:derain/fp32", tiny_zoo) == tiny_zoo / "derain" / "fp32"
    assert zoo.tasks(tiny_zoo) == ["dehaze", "derain", "desnow"]
    assert zoo.resolve_path("some/folder", "artifact") == Path("some/folder")


@pytest.mark.parametrize("name,needle", [
    ("zoo:haze", "unknown zoo model 'zoo:haze'; the zoo ({root}) has: zoo:dehaze, zoo:derain, zoo:desnow"),
    ("zoo:", "name a task"),
    ("zoo:dehaze/int4", "has no 'int4' artifact; it has: zoo:dehaze/int8, zoo:dehaze/fp32"),
    ("zoo:desnow", "has no trained model for 'desnow' yet; make one with: qt-train --config configs/desnow.yaml"),
])
def test_bad_names_are_one_line_errors(tiny_zoo, name, needle):
    with pytest.raises(zoo.ZooError) as exc:
        zoo.resolve_artifact(name, tiny_zoo)
    assert needle.format(root=tiny_zoo) in str(exc.value) and "\n" not in str(exc.value)


def test_checkpoint_names(tiny_zoo):
    with pytest.raises(zoo.ZooError, match="no precision variant"):
        zoo.resolve_checkpoint("zoo:dehaze/int8", tiny_zoo)
    with pytest.raises(zoo.ZooError, match="ships no checkpoint"):
        zoo.resolve_checkpoint("zoo:dehaze", tiny_zoo)


def test_a_changed_or_missing_file_is_refused(tmp_path):
    root = make_zoo(tmp_path / "zoo", tasks=("dehaze",))
    model = root / "dehaze" / "int8" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(zoo.ZooError, match=r"model.onnx does not match its sha256 in .*index.json \(damaged"):
        zoo.resolve_artifact("zoo:dehaze", root)
    assert zoo.resolve_artifact("zoo:dehaze/fp32", root)  # the other artifact is intact
    (root / "dehaze" / "fp32" / "model.bin").unlink()
    with pytest.raises(zoo.ZooError, match=r"no trained model for 'dehaze' yet \(missing: dehaze/fp32/model.bin\); "
                                           "make one with: make-dehaze"):
        zoo.resolve_artifact("zoo:dehaze/fp32", root)


def test_no_zoo_or_a_broken_index(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ENV, str(tmp_path / "nowhere"))
    with pytest.raises(zoo.ZooError, match="no model zoo at .*nowhere"):
        zoo.resolve_artifact("zoo:dehaze")
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(zoo.ZooError, match="cannot read"):
        zoo.read_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"schema": 99, "tasks": {}}))
    with pytest.raises(zoo.ZooError, match="newer than this toolkit"):
        zoo.read_index(tmp_path)


def test_the_committed_zoo():
    """Every task has an entry; a trained one resolves with every file matching its hash (and the
    package data ships those files); one without a model says how to make it."""
    root = Path(zoo.__file__).parent
    index = zoo.read_index(root)
    assert sorted(index["tasks"]) == sorted(TASKS)
    for task in TASKS:
        e = zoo.entry(f"zoo:{task}", root)
        assert e.make
        if e.trained:
            art = zoo.resolve_artifact(f"zoo:{task}", root)
            assert (art / "manifest.json").is_file() and (art / "report.json").is_file()
            assert zoo.resolve_checkpoint(f"zoo:{task}", root).stat().st_size < 8 * 2**20
            for k in ("method", "arch", "command", "metrics"):
                assert e.data.get(k), (task, k)
        else:
            with pytest.raises(zoo.ZooError, match=f"no trained model for '{task}' yet; make one with: qt-train"):
                zoo.resolve_artifact(f"zoo:{task}", root)


# ------------------------------------------------------------------------------ qt-run zoo:TASK

def test_qt_run_zoo_name(tiny_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(zoo.ENV, str(tiny_zoo))
    out, summary = tmp_path / "out.avi", tmp_path / "s.json"
    assert qt_run(["zoo:dehaze", "--source", str(_clip(tmp_path / "in.avi")), "--sink", str(out), "--no-progress",
                   "--summary", str(summary)]) == 0
    stdout = capsys.readouterr().out
    s = json.loads(summary.read_text())
    assert s["frames_out"] == 12 and s["backend"]["backend"] == "onnxruntime"  # the INT8 Q/DQ artifact
    line = _one_line(stdout)  # a human summary, no JSON without --json
    assert line.startswith("qt-run: 12 frames in") and "FPS" in line and "p99" in line and "dropped 0, corrupt 0" in line
    assert qt_run(["zoo:dehaze/fp32", "--source", str(tmp_path / "in.avi"), "--sink", "null", "--no-progress",
                   "--json"]) == 0
    got = capsys.readouterr()
    assert json.loads(got.out)["backend"]["backend"] == "openvino" and got.err.startswith("qt-run: 12 frames")
    assert qt_run(["verify", "zoo:dehaze"]) == 2  # resolved: these tiny artifacts carry no gate frames
    assert "carries no gate frames" in _one_line(capsys.readouterr().err)
    assert qt_run(["zoo:nope", "--source", str(tmp_path / "in.avi")]) == 2
    assert _one_line(capsys.readouterr().err).startswith("qt-run: error: unknown zoo model 'zoo:nope'; the zoo")
    assert qt_run(["verify", "zoo:desnow"]) == 2
    assert "no trained model for 'desnow' yet" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------ a real entry, end to end

TINY_RUN = [
    "model.arch=edge_unet",  # the tests' model, whatever backbone a task config ships with
    "model.options={widths: [8, 16, 16], enc_blocks: [0, 0], mid_blocks: 1, dec_blocks: [0, 0]}",
    "data.size=96", "data.patch=96", "data.n_train=6", "data.n_val=2", "train.batch=2", "train.threads=1",
    "train.method=supervised", "train.base_iterations=2", "train.iterations=1", "train.log_every=1",
    "train.eval_every=1000", "train.ckpt_every=1000", "train.image_every=1000",
]


def _sets(items) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def built_zoo(tmp_path_factory) -> Path:
    """qt-train (tiny) -> python -m qt_apps.zoo_add: a zoo entry with a checkpoint, FP32 and INT8 artifacts."""
    from qt_apps.zoo_add import main as zoo_add
    from qt_export.export import synthetic_frames
    from qt_train.train.cli import main as qt_train

    d = tmp_path_factory.mktemp("built")
    assert qt_train(["--config", str(REPO / "configs" / "dehaze.yaml"), "--run-dir", str(d / "run"), "--no-progress",
                     *_sets(TINY_RUN)]) == 0
    calib = d / "calib"
    calib.mkdir()
    for i, f in enumerate(synthetic_frames(16, (96, 128), seed=3)):
        cv2.imwrite(str(calib / f"{i:02d}.png"), f)
    assert zoo_add(["dehaze", "--checkpoint", str(d / "run" / "last.ckpt"), "--calib", str(calib), "--zoo",
                    str(d / "zoo"), "--size", "128x96", "--speed-size", "128x96", "--calib-frames", "12", "--gate-frames", "3",
                    "--eval-limit", "2", "--eval-size", "96", "--speed-frames", "8",
                    "--make", "the tiny run of tests/test_zoo.py"]) == 0
    return d / "zoo"


@pytest.mark.slow
def test_zoo_add_builds_a_complete_entry(built_zoo):
    index = zoo.read_index(built_zoo)
    e = index["tasks"]["dehaze"]
    assert e["method"] == "supervised" and e["arch"] == "edge_unet" and "qt-train" in e["command"]
    assert e["make"] == "the tiny run of tests/test_zoo.py"
    for rel in ("dehaze/model.ckpt", "dehaze/config.yaml", "dehaze/eval.json", "dehaze/openvino-int8/manifest.json",
                "dehaze/openvino-int8/report.json", "dehaze/openvino-fp32/model.xml"):
        assert e["sha256"][rel] == sha256_file(built_zoo / rel)
    m = e["metrics"]
    evaluated = json.loads((built_zoo / "dehaze" / "eval.json").read_text())
    assert m["heldout"]["realistic"]["psnr"] == evaluated["paired"]["realistic"]["psnr"]  # copied, not typed
    # result files name the shipped checkpoint, not a path of the machine that built the entry
    for rel in ("dehaze/eval.json", "dehaze/openvino-int8/report.json", "dehaze/openvino-fp32/report.json"):
        assert json.loads((built_zoo / rel).read_text())["checkpoint"] == "dehaze/model.ckpt"
    assert m["export_gate"]["int8"]["passed"] and m["speed_int8"]["fps"] > 0 and m["speed_int8"]["size"] == "128x96"
    assert json.loads((built_zoo / "dehaze" / "openvino-int8" / "manifest.json").read_text())["precision"] == "int8"
    assert (built_zoo / "dehaze" / "model.ckpt").stat().st_size < (built_zoo.parent / "run" / "last.ckpt").stat().st_size


@pytest.mark.slow
def test_every_command_takes_the_zoo_name(built_zoo, tmp_path, monkeypatch, capsys):
    from qt_export.cli import main as qt_export
    from qt_train.checkpoint import load_checkpoint
    from qt_train.eval_cli import main as qt_eval
    from qt_train.train.cli import main as qt_train

    monkeypatch.setenv(zoo.ENV, str(built_zoo))
    assert qt_run(["zoo:dehaze", "--source", str(_clip(tmp_path / "in.avi", size=(96, 128))), "--sink",
                   str(tmp_path / "out.mp4"), "--no-progress", "--summary", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["frames_out"] == 12
    assert qt_run(["verify", "zoo:dehaze"]) == 0  # the INT8 gate frames hold here too
    capsys.readouterr()
    # qt-export refuses to write into the zoo, then exports the zoo's checkpoint elsewhere
    assert qt_export(["zoo:dehaze", "--target", "cpu", "--size", "64x64", "--gate-frames", "2"]) == 2
    assert "--out" in _one_line(capsys.readouterr().err)
    assert qt_export(["zoo:dehaze", "--target", "jetson", "--size", "64x64", "--gate-frames", "2",
                      "--out", str(tmp_path / "jetson")]) == 0
    assert (tmp_path / "jetson" / "model.onnx").is_file()
    assert qt_eval(["zoo:dehaze", "--out", str(tmp_path / "eval"), "--limit", "2", "--size", "96"]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["method"] == "supervised"
    # fine-tuning starts from the zoo's weights (stage 1 skipped)
    run = tmp_path / "ft"
    assert qt_train(["--config", str(REPO / "configs" / "dehaze.yaml"), "--run-dir", str(run), "--no-progress",
                     *_sets([*TINY_RUN, "train.init=zoo:dehaze"])]) == 0
    assert load_checkpoint(run / "last.ckpt")["iteration"] == 1
    capsys.readouterr()
    assert qt_train(["--config", str(REPO / "configs" / "dehaze.yaml"), "--run-dir", str(tmp_path / "x"),
                     *_sets([*TINY_RUN, "train.init=zoo:fog"])]) == 2
    assert "the zoo" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------ a runtime-only install

def _runtime_only_venv(venv: Path, wheel_dir: Path) -> Path:
    """A venv holding what ``pip install '.[runtime]'`` installs, offline: this project's wheel plus the
    runtime extra's dependency closure, linked from this interpreter's site-packages (resolved from
    the installed distributions' metadata, so nothing torch-side can slip in)."""
    import importlib.metadata as md
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    here = Path(sysconfig.get_paths()["purelib"])
    from packaging.requirements import Requirement

    todo: list[tuple[str, str]] = [(r, "runtime") for r in md.requires("qualiteacher-edge")]
    seen: set[str] = set()
    while todo:
        text, extra = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        dist = md.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if top.endswith(".pth") or top == "__pycache__":
                continue
            if not (site / top).exists() and (here / top).exists():
                (site / top).symlink_to(here / top)
        todo += [(r, "") for r in dist.requires or []]
    wheels = list(wheel_dir.glob("qualiteacher_edge-*.whl"))
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheels[0])], check=True,
                   capture_output=True, timeout=300)
    return py


@pytest.mark.slow
def test_qt_run_zoo_in_a_runtime_only_install(tmp_path):
    """`pip install '.[runtime]'` then `qt-run zoo:TASK` for all five tasks: the committed zoo's trained
    entries as installed, the others from a tiny zoo; torch is not even installed there."""
    t0 = time.perf_counter()
    wheel_dir = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheel_dir), str(REPO)], check=True, capture_output=True, timeout=600,
                   cwd=tmp_path)  # pip's build writes nothing into the repo's working tree but build/ (removed)
    shutil.rmtree(REPO / "build", ignore_errors=True)
    py = _runtime_only_venv(tmp_path / "venv", wheel_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", zoo.ENV)}
    probe = ("import importlib.util as u, qt_core.zoo as z, json, pathlib; "
             "print(json.dumps([u.find_spec(m) is None for m in ('torch', 'nncf', 'pyiqa')] + "
             "[str(pathlib.Path(z.__file__).parent)] + z.tasks()))")
    r = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    no_torch, no_nncf, no_pyiqa, installed_zoo, *tasks = json.loads(r.stdout)
    assert no_torch and no_nncf and no_pyiqa and str(tmp_path / "venv") in installed_zoo and sorted(tasks) == sorted(TASKS)
    installed = zoo.read_index(installed_zoo)
    fallback = make_zoo(tmp_path / "tiny-zoo", tasks=[t for t in TASKS if not zoo.entry(
        f"zoo:{t}", installed_zoo).trained] or ["dehaze"])
    clip = _clip(tmp_path / "in.avi")
    qt_run_bin = tmp_path / "venv" / "bin" / "qt-run"
    for task in TASKS:
        trained = bool(zoo.entry(f"zoo:{task}", installed_zoo).trained)
        run_env = env if trained else {**env, zoo.ENV: str(fallback)}
        r = subprocess.run([str(qt_run_bin), f"zoo:{task}", "--source", str(clip), "--sink", str(tmp_path / f"{task}.avi"),
                            "--no-progress", "--summary", str(tmp_path / f"{task}.json")],
                           capture_output=True, text=True, cwd=tmp_path, env=run_env, timeout=300)
        assert r.returncode == 0, (task, r.stderr)
        assert json.loads((tmp_path / f"{task}.json").read_text())["frames_out"] == 12
        assert r.stdout.startswith("qt-run: 12 frames"), r.stdout
        if not trained:  # the installed zoo says how to make it, in one line
            r = subprocess.run([str(qt_run_bin), f"zoo:{task}", "--source", str(clip)], capture_output=True,
                               text=True, cwd=tmp_path, env=env, timeout=120)
            assert r.returncode == 2 and f"no trained model for '{task}' yet; make one with:" in _one_line(r.stderr)
    assert installed["tasks"].keys() == set(TASKS)
    print(f"runtime-only venv + 5 runs: {time.perf_counter() - t0:.0f} s")


# ------------------------------------------------------------------------------ the console

def test_set_reads_exponent_floats_as_numbers():
    """`--set train.base_lr=2e-4` (YAML 1.1 would read a string and the schema refuse it)."""
    from qt_train.schema import load_run_config

    cfg = load_run_config(REPO / "configs" / "dehaze.yaml", ["train.base_lr=2e-4", "train.ema_decay=9.99E-1"])
    assert cfg.train.base_lr == pytest.approx(2e-4) and cfg.train.ema_decay == pytest.approx(0.999)


@pytest.mark.slow
def test_library_info_lines_are_quiet_unless_verbose():
    """NNCF's INFO lines (its own stdout handler) and torch's no-CUDA warning vanish; warnings stay."""
    code = """
import logging, sys
from qt_core.quiet import quiet_libraries
quiet_libraries(verbose='--verbose' in sys.argv)
import nncf  # sets its logger to INFO with a stdout handler, after the filter is in place
from nncf.common.logging import nncf_logger
nncf_logger.info('NNCF-INFO-LINE')
nncf_logger.warning('NNCF-WARNING-LINE')
logging.getLogger('torch.utils.cpp_extension').warning('No CUDA runtime is found')
"""
    env = {**os.environ, "OPENVINO_TELEMETRY_OPT_OUT": "1"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    loud = subprocess.run([sys.executable, "-c", code, "--verbose"], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=300)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "NNCF-INFO-LINE" not in quiet.stdout + quiet.stderr and "NNCF-WARNING-LINE" in quiet.stdout + quiet.stderr
    assert "No CUDA runtime" not in quiet.stderr
    assert "NNCF-INFO-LINE" in loud.stdout + loud.stderr and "No CUDA runtime" in loud.stderr


def test_zoo_table_reads_every_number_from_the_index():
    from qt_apps.zoo_table import zoo_table
    from qt_core.zoo import default_root, read_index

    root = default_root()
    table = zoo_table(root)
    for task, entry in read_index(root)["tasks"].items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {task} |"))
        if "metrics" in entry:
            h = entry["metrics"]["heldout"]["realistic"]
            assert f"{h['psnr']:.2f} / {h['ssim']:.3f}" in row and entry["method"] in row
        else:
            assert "no trained model yet" in row
