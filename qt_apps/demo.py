"""`make demo`: the main job end to end on embedded data, as far as the toolkit goes today.

The degradation engine writes preview grids and small paired sets for every task and both
domains; a small dehazing student is trained (stage 1 base model, then QualiTeacher) and
evaluated (PSNR/SSIM, per-level curve, before/after grid); it is exported to an INT8 OpenVINO
artifact that must pass the consistency gate; and qt-run restores a hazy video clip with it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from qt_core.cli import OneLineParser, run_main

PROG = "qt-demo"
# Small enough for ~1 minute of CPU: the method's pieces all run (bank, levels, preference, consistency).
DEMO_TRAINING = [
    "data.n_train=64", "data.n_val=8", "data.patch=96", "train.n_real=16", "train.batch=4", "train.real_batch=2",
    "train.base_iterations=300", "train.iterations=40", "train.eval_every=340", "train.ckpt_every=340",
    "train.image_every=340", "train.log_every=20", "method.preference_start=20", "method.consistency_start=20",
]
NOT_YET = ("TensorRT engines (they are built on the GPU device itself: qt-run build-engine)",)


def _body(argv: Sequence[str] | None) -> int:
    import numpy as np

    from qt_train.data.clean import sample_clean
    from qt_train.data.degrade import DOMAINS, TASKS
    from qt_train.data.make import make_paired_set
    from qt_train.data.preview import write_previews

    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for everything the demo writes")
    parser.add_argument("--n", type=int, default=8, help="pairs per task and domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None, help="training config (default: configs/dehaze.yaml)")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = parser.parse_args(argv)
    from qt_core.quiet import quiet_libraries

    quiet_libraries(args.verbose)
    bars = sys.stderr.isatty()  # progress bars in a terminal only

    start = time.perf_counter()
    out: Path = args.out
    clean = sample_clean("package_photos", 3, 192, np.random.default_rng(args.seed))
    previews = write_previews(clean, out / "previews", seed=args.seed)
    print(f"[1/6] degradation previews: {len(previews)} grids in {out / 'previews'}")
    for task in TASKS:
        for domain in DOMAINS:
            make_paired_set(
                out / "data" / task / domain, task=task, domain=domain, n=args.n, seed=args.seed,
                size=256, clean="mixed", force=True, argv=[PROG, *(argv or sys.argv[1:])],
            )
    print(f"[2/6] paired sets ({args.n} pairs each, {len(TASKS)} tasks x {len(DOMAINS)} domains) in {out / 'data'}")

    # A demo-sized run: minutes on a laptop CPU; real runs use the task configs as they are.
    import shutil

    from qt_train.eval_cli import evaluate_checkpoint
    from qt_train.schema import load_run_config
    from qt_train.train.loop import train

    run_dir = out / "train" / "dehaze-qualiteacher"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo owns this folder; every demo starts afresh
    cfg = load_run_config(Path(__file__).resolve().parents[1] / "configs" / "dehaze.yaml" if args.config is None
                          else args.config, DEMO_TRAINING)
    ckpt = train(cfg, run_dir, argv=[PROG, *(argv or sys.argv[1:])], progress=bars)
    print(f"[3/6] trained a dehazing student ({cfg.train.base_iterations} base + {cfg.train.iterations} "
          f"QualiTeacher iterations): {ckpt}")
    results = evaluate_checkpoint(ckpt, out / "eval" / "dehaze-qualiteacher", None, [], None, 128, 16, force=True)
    rs = results["paired"]["realistic"]
    print(f"[4/6] evaluation in {out / 'eval' / 'dehaze-qualiteacher'}: held-out realistic PSNR {rs['psnr']:.2f} dB "
          f"(input {rs['input_psnr']:.2f}); per-level Spearman ρ by the judge {results['level_curve']['judge']['spearman']:.2f}")

    from qt_export.cli import main as export_main
    from qt_runtime.cli import main as run_main_cli

    artifact = out / "artifact" / "dehaze-cpu-int8"
    # both domains' hazy frames: the gate needs frames of its own beside the calibration set
    calib = [out / "data" / "dehaze" / domain / "lq" for domain in DOMAINS]
    code = export_main([str(ckpt), "--target", "cpu", "--int8", *(a for c in calib for a in ("--calib", str(c))),
                        "--size", "256x256", "--calib-frames", str(2 * args.n - 4), "--gate-frames", "4",
                        "--out", str(artifact), "--force"])
    if code:
        raise ValueError(f"qt-export failed (exit {code}); see the message above")
    print(f"[5/6] INT8 OpenVINO artifact, gated against FP32: {artifact} (manifest.json, report.json, compare.png)")
    clip = _hazy_clip(out / "clip" / "hazy.mp4", args.seed)
    restored = out / "restored.mp4"
    code = run_main_cli([str(artifact), "--source", str(clip), "--sink", str(restored), "--force",
                         *([] if bars else ["--no-progress"]), "--summary", str(out / "run_summary.json")])
    if code:
        raise ValueError(f"qt-run failed (exit {code}); see the message above")
    print(f"[6/6] qt-run restored {clip} -> {restored} (stats: {out / 'run_summary.json'})")
    from qt_apps.report import build_report

    report = build_report(out)
    print(f"done in {time.perf_counter() - start:.1f} s. Results: {out.resolve()}")
    print(f"report: {report.resolve()}")
    print("not built yet, so not in this demo: " + "; ".join(NOT_YET))
    return 0


def _hazy_clip(path: Path, seed: int, frames: int = 48, size: int = 256) -> Path:
    """A short hazy video: a camera panning across a held-out photo under realistic haze."""
    import cv2
    import numpy as np

    from qt_core.pixels import to_uint8
    from qt_train.data.clean import package_photos
    from qt_train.data.degrade import degrade

    photo = next(p.image for p in package_photos() if p.name == "chelsea")
    photo = cv2.resize(photo, (size * 2, round(photo.shape[0] * size * 2 / photo.shape[1])), interpolation=cv2.INTER_AREA)
    step = (photo.shape[1] - size) / (frames - 1)
    crops = np.stack([photo[:size, round(i * step) : round(i * step) + size] for i in range(frames)])
    # the same seed for every frame: one fog that stays put while the camera pans
    hazy = np.concatenate([degrade("dehaze", "synthetic", c[None], seed, severity=0.6)[0] for c in crops])
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (size, size))
    for f in hazy:
        writer.write(cv2.cvtColor(to_uint8(f), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
