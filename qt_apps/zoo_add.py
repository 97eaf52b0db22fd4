"""Add a trained student to the model zoo (or replace its entry): one command per task.

  python -m qt_apps.zoo_add dehaze --checkpoint runs/zoo/dehaze/last.ckpt --calib runs/zoo/calib-dehaze/lq

From the run's checkpoint it writes, into ``ZOO/TASK/`` (default zoo: ``qt_core/zoo/``, or ``$QT_ZOO``):

- ``model.ckpt``: the EMA weights, architecture and run config only (no optimiser, bank or RNG
  states), a qt-train checkpoint that ``qt-export``, ``qt-eval`` and ``train.init`` read;
- ``config.yaml`` and the command that trained it (the run folder's ``command.txt``);
- ``openvino-fp32/`` and ``openvino-int8/``: ``qt-export`` artifacts, each through its gate;
- the held-out evaluation (``qt-eval``: PSNR/SSIM per domain, judge and reward scores, per-level ρ)
  and the INT8 artifact's throughput through ``qt-run`` on a synthetic clip of the export size;

then records the entry (method, arch, metrics, sha256 of every file) in ``ZOO/index.json``. Every
number in the entry is measured here; the task folder is staged and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qt_core.cli import OneLineParser, run_main

PROG = "qt-zoo-add"
#: What a trained checkpoint holds that a shipped student does not need.
TRAINING_ONLY = ("optimizer", "bank", "rng", "scheduler", "ema")


def slim_checkpoint(src: Path, dst: Path) -> dict[str, Any]:
    """The EMA student of ``src`` as a small checkpoint at ``dst``; returns what it holds (less weights)."""
    from qt_train.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(src)
    if "config" not in state or "arch" not in state:
        raise ValueError(f"{src} carries no run config or architecture; pass a checkpoint written by qt-train")
    weights = state.get("ema") or state["model"]
    slim = {k: v for k, v in state.items() if k not in (*TRAINING_ONLY, "model", "format", "version")}
    save_checkpoint(dst, {**slim, "model": weights})
    return {k: v for k, v in slim.items() if k != "level_cuts"}


def ship_relative(path: Path, task: str) -> None:
    """A result file names the checkpoint it measured; in the zoo that is ``TASK/model.ckpt``, not
    the staging folder it was built in (a path of the build machine, gone once the stage is renamed)."""
    from qt_core.atomic import atomic_write_text

    data = json.loads(path.read_text())
    data["checkpoint"] = f"{task}/model.ckpt"
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _metrics(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers the zoo table shows, copied from qt-eval's results (nothing computed here)."""
    keep = ("psnr", "ssim", "psnr_y", "ssim_y", "input_psnr", "input_ssim")
    out: dict[str, Any] = {"heldout": {}}
    for domain, m in results.get("paired", {}).items():
        out["heldout"][domain] = {**{k: m[k] for k in keep if k in m},
                                  "judge": m["output_scores"]["judge"], "judge_input": m["input_scores"]["judge"],
                                  "reward": m["output_scores"]["reward"], "reward_input": m["input_scores"]["reward"]}
    curve = results.get("level_curve") or {}
    if curve:
        out["level_spearman"] = {name: c["spearman"] for name, c in curve.items()}
    for key in ("reward_ensemble", "judge"):
        out[key] = {m["name"]: m["weight"] for m in results.get(key, {}).get("members", [])}
    return out


def _speed(artifact: Path, size: tuple[int, int], frames: int, scratch: Path) -> dict[str, Any]:
    """qt-run's own summary on a synthetic clip of ``size`` (H, W): FPS and inference latency."""
    import cv2

    from qt_core.machine import cpu_info
    from qt_export.export import synthetic_frames
    from qt_runtime.cli import main as qt_run

    clip = scratch / "speed.avi"
    h, w = size
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    for f in synthetic_frames(frames, size, seed=1):
        writer.write(f)
    writer.release()
    summary = scratch / "speed.json"
    code = qt_run([str(artifact), "--source", str(clip), "--sink", "null", "--no-progress", "--summary", str(summary)])
    if code:
        raise ValueError(f"qt-run failed on {artifact} (exit {code}); see the message above")
    s = json.loads(summary.read_text())
    infer = s["latency"]["infer"]
    return {"size": f"{w}x{h}", "frames": s["frames_out"], "fps": s["fps_mean"], "infer_p50_ms": infer.get("p50_ms"),
            "infer_p99_ms": infer.get("p99_ms"), "cpu": cpu_info()}


def add_entry(task: str, checkpoint: Path, calib: list[Path], zoo: Path, *, size: tuple[int, int] = (256, 256),
              speed_size: tuple[int, int] = (360, 640), calib_frames: int = 200, gate_frames: int = 3,
              qat: bool = False, eval_limit: int | None = None, eval_size: int | None = None, speed_frames: int = 64,
              make: str | None = None, log=print) -> dict[str, Any]:
    """Build ``zoo/TASK`` from a trained checkpoint and record it in ``zoo/index.json``; returns the entry.

    The artifacts take any frame size (dynamic shapes: a zoo model must run on the user's video);
    ``size`` is the calibration and gate frames' size, kept small because every artifact carries
    its gate frames; ``speed_size`` is the size qt-run's throughput is measured at."""
    import yaml

    from qt_core.atomic import atomic_write_text, staged_dir
    from qt_core.hashing import sha256_file
    from qt_core.zoo import INDEX, read_index
    from qt_export.export import ExportOptions, run_export
    from qt_train.eval_cli import evaluate_checkpoint
    from qt_train.evaluate import EVAL_LIMIT, EVAL_SIZE

    checkpoint = Path(checkpoint)
    if not calib:
        raise ValueError("--calib is required: frames of the task's degraded footage for INT8 calibration")
    index_path = zoo / INDEX
    index = read_index(zoo) if index_path.is_file() else {"schema": 1, "tasks": {}}
    previous = index["tasks"].get(task) or {}
    with tempfile.TemporaryDirectory(prefix=".qt-zoo-") as tmp, staged_dir(zoo / task, force=True) as stage:
        scratch = Path(tmp)
        held = slim_checkpoint(checkpoint, stage / "model.ckpt")
        if held.get("task") not in (None, task) or held["config"].get("task") not in (None, task):
            raise ValueError(f"{checkpoint} was trained for '{held['config'].get('task')}', not '{task}'")
        atomic_write_text(stage / "config.yaml", yaml.safe_dump(held["config"], sort_keys=False))
        command_file = checkpoint.parent / "command.txt"
        command = command_file.read_text().strip().splitlines()[-1] if command_file.is_file() else None
        log(f"[1/4] {task}: checkpoint {checkpoint} -> {stage.name}/model.ckpt (EMA weights and run config)")
        reports = {}
        for name, int8 in (("fp32", False), ("int8", True)):
            out = stage / f"openvino-{name}"
            run_export(ExportOptions(checkpoint=stage / "model.ckpt", target="cpu", int8=int8, qat=qat and int8,
                                     calib=tuple(calib), calib_frames=calib_frames, size=size, dynamic=True,
                                     gate_frames=gate_frames, out=out),
                       log=lambda m, name=name: log(f"      export {name}: {m}"))
            ship_relative(out / "report.json", task)
            reports[name] = json.loads((out / "report.json").read_text())
            (out / "compare.png").unlink(missing_ok=True)  # a picture for people; the zoo stays light
        log(f"[2/4] {task}: OpenVINO FP32 and INT8 artifacts, each through the export gate")
        results = evaluate_checkpoint(stage / "model.ckpt", scratch / "eval", None, [], None,
                                      eval_size or EVAL_SIZE, eval_limit or EVAL_LIMIT, force=True)
        shutil.copy2(scratch / "eval" / "results.json", stage / "eval.json")
        ship_relative(stage / "eval.json", task)
        log(f"[3/4] {task}: held-out evaluation (qt-eval) -> {stage.name}/eval.json")
        speed = _speed(stage / "openvino-int8", speed_size, speed_frames, scratch) if speed_frames else None
        log(f"[4/4] {task}: INT8 throughput through qt-run: "
            + (f"{speed['fps']:.1f} FPS at {speed['size']}" if speed else "not measured"))
    files = sorted(str(p.relative_to(zoo)) for p in (zoo / task).rglob("*") if p.is_file())
    cfg = held["config"]
    entry = {
        "make": make or previous.get("make") or f"python -m qt_apps.zoo_add {task} --checkpoint {checkpoint} "
                                                 + " ".join(f"--calib {c}" for c in calib),
        "arch": held.get("arch"), "method": cfg.get("train", {}).get("method"), "config": f"{task}/config.yaml",
        "command": command, "iteration": held.get("iteration"),
        "checkpoint": f"{task}/model.ckpt",
        "artifacts": {"int8": f"{task}/openvino-int8", "fp32": f"{task}/openvino-fp32"}, "default": "int8",
        "eval": f"{task}/eval.json",
        "metrics": {**_metrics(results), "export_gate": {k: r["candidates"][r["chosen"]] for k, r in reports.items()},
                    **({"speed_int8": speed} if speed else {})},
        "sha256": {f: sha256_file(zoo / f) for f in files},
    }
    index["tasks"][task] = entry
    atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=False) + "\n")
    size_mb = sum((zoo / f).stat().st_size for f in files) / 2**20
    log(f"zoo:{task} recorded in {index_path} ({len(files)} files, {size_mb:.1f} MB)")
    return entry


def _body(argv: Sequence[str] | None) -> int:
    from qt_core.quiet import quiet_libraries
    from qt_core.zoo import default_root
    from qt_export.cli import parse_size
    from qt_train.data.degrade import TASKS

    p = OneLineParser(prog=PROG, description=__doc__)
    p.add_argument("task", choices=TASKS)
    p.add_argument("--checkpoint", type=Path, required=True, help="the run's last.ckpt (written by qt-train)")
    p.add_argument("--calib", type=Path, action="append", default=[], help="INT8 calibration footage (repeatable)")
    p.add_argument("--zoo", type=Path, default=None, help="zoo folder (default: $QT_ZOO, else qt_core/zoo)")
    p.add_argument("--size", type=parse_size, default=(256, 256),
                   help="calibration and gate frame size WxH (default 256x256; the artifacts take any size)")
    p.add_argument("--speed-size", type=parse_size, default=(360, 640), help="qt-run FPS measured at WxH")
    p.add_argument("--calib-frames", type=int, default=200)
    p.add_argument("--gate-frames", type=int, default=3, help="held-out gate frames (stored in each artifact)")
    p.add_argument("--qat", action="store_true", help="INT8: also try QAT; ship the better one")
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--eval-size", type=int, default=None)
    p.add_argument("--speed-frames", type=int, default=64, help="frames of the qt-run FPS measurement (0: skip)")
    p.add_argument("--make", default=None, help="the commands that rebuild this entry (recorded in the index)")
    p.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    quiet_libraries(args.verbose)
    add_entry(args.task, args.checkpoint, args.calib, args.zoo or default_root(), size=args.size,
              speed_size=args.speed_size,
              calib_frames=args.calib_frames, gate_frames=args.gate_frames, qat=args.qat, eval_limit=args.eval_limit,
              eval_size=args.eval_size, speed_frames=args.speed_frames, make=args.make)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
