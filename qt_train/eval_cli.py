"""qt-eval: measure a trained checkpoint.

  qt-eval runs/dehaze-qualiteacher/last.ckpt --out runs/dehaze-eval
  qt-eval CKPT --pairs /data/hazy_pairs --real /footage/frames --out DIR
  qt-eval zoo:dehaze --out DIR                     (a model of the zoo)

Writes DIR/results.json (PSNR/SSIM on pairs; on every set the scores of the reward ensemble the
student was trained with and of the judge it never saw, `iqa.judge`; the per-level curve with its
Spearman ρ and the fraction of images where the top level beats the best PL, each by the judge
and by the reward), DIR/levels.png and DIR/grid.png. A gain only the reward sees is reward hacking.
Without --pairs it evaluates held-out pairs of both domains synthesised from the run's config
(from clean images no training or fit used).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qt_core.cli import OneLineParser, run_main

PROG = "qt-eval"


def _load_images(paths: Sequence[Path], size: int, limit: int) -> Any:
    """Centre crops of `size` px from images, folders and videos (frames sampled), as (N,3,S,S)."""
    import cv2
    import numpy as np
    import torch

    from qt_train.data.io import IMAGE_EXTS, VIDEO_EXTS, ImageReadError, list_files, read_image
    from qt_train.data.video import sample_frames

    frames: list[np.ndarray] = []
    for p in paths:
        files = list_files(p, IMAGE_EXTS + VIDEO_EXTS, recursive=True) if p.is_dir() else [p]
        for f in files:
            try:
                if f.suffix.lower() in VIDEO_EXTS:
                    frames += list(sample_frames(f, 8, max_side=2 * size))
                else:
                    frames.append(read_image(f, max_side=2 * size))
            except ImageReadError as exc:
                import warnings

                warnings.warn(f"skipping {exc}", stacklevel=2)
    if not frames:
        raise ValueError(f"no readable images in {', '.join(map(str, paths))}")
    out = []
    for img in frames[:limit]:
        h, w = img.shape[:2]
        scale = size / min(h, w)
        if scale != 1:  # short side to --size: shrink (area) or, for a photo smaller than that, enlarge (cubic)
            img = cv2.resize(img, (max(size, round(w * scale)), max(size, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC).clip(0, 1)
        h, w = img.shape[:2]
        y, x = (h - size) // 2, (w - size) // 2
        out.append(img[y : y + size, x : x + size])
    return torch.from_numpy(np.stack(out).transpose(0, 3, 1, 2).copy())


def evaluate_checkpoint(ckpt_path: Path, out: Path, pairs: Path | None, real: list[Path], quality: float | None,
                        size: int, limit: int, force: bool, config: str | None = None) -> dict:
    import numpy as np

    from qt_core.atomic import atomic_write_text, staged_dir
    from qt_train.data.io import write_image
    from qt_train.evaluate import (
        before_after_grid,
        ensemble_scorer,
        extrapolation,
        heldout_sets,
        level_curve,
        load_student,
        paired_metrics,
        plot_level_curve,
        psnr_scorer,
        run_model,
    )
    from qt_train.iqa import Ensemble
    from qt_train.iqa.spec import reward_and_judge, spec_to_dict

    student = load_student(ckpt_path, config, quality)
    cfg, model, arch, conditioned, q = student.cfg, student.model, student.arch, student.conditioned, student.quality
    spec, judge_spec = reward_and_judge(cfg.iqa.ensemble, cfg.iqa.judge)
    scorers = {"reward": Ensemble(spec, weights_dir=cfg.iqa.weights_dir), "judge": Ensemble(judge_spec)}

    def scores(x) -> dict[str, float]:
        return {name: float(e.score(x, use_cache=False).combined.mean()) for name, e in scorers.items()}

    results: dict = {"checkpoint": str(ckpt_path), "arch": arch, "task": cfg.task, "method": cfg.train.method,
                     "quality": q, "reward_ensemble": spec_to_dict(spec), "judge": spec_to_dict(judge_spec),
                     "paired": {}, "real": {}}
    grid_sets = []
    if pairs is not None:
        lq = _load_images([pairs / "lq"], size, limit)
        gt = _load_images([pairs / "gt"], size, limit)
        if lq.shape != gt.shape:
            raise ValueError(f"{pairs}: lq/ and gt/ hold different numbers of images")
        sets = {"pairs": (lq, gt)}
    else:
        sets = heldout_sets(cfg, limit, size)
    for name, (lq, gt) in sets.items():
        restored = run_model(model, lq, q)
        results["paired"][name] = {**paired_metrics(restored, gt, lq), "input_scores": scores(lq),
                                   "output_scores": scores(restored)}
        grid_sets.append((lq, restored, gt))

    # Real images when given; otherwise the first set's inputs probe the level curve.
    x = _load_images(real, size, limit) if real else sets[next(iter(sets))][0]
    restored = run_model(model, x, q)
    results["real" if real else "probe"] = {
        "source": [str(p) for p in real] if real else f"held-out {next(iter(sets))} inputs",
        "n": len(x),
        "input_scores": scores(x),
        "output_scores": scores(restored),
    }
    if real:
        grid_sets.append((x, restored, None))
    curve = None
    if conditioned:
        # By the reward and the judge on the real images (else the probe inputs), and by ground
        # truth (PSNR) on the paired set: the one curve no IQA model's taste can bend.
        fidelity_set = "realistic" if "realistic" in sets else next(iter(sets))
        probes = {name: (x, ensemble_scorer(e)) for name, e in scorers.items()}
        probes["psnr"] = (sets[fidelity_set][0], psnr_scorer(sets[fidelity_set][1]))
        results["level_curve"], results["extrapolation"], results["fidelity_set"] = {}, {}, fidelity_set
        for name, (inputs, score) in probes.items():
            c = level_curve(model, inputs, score)
            results["level_curve"][name] = {"levels": c.levels, "scores": c.scores, "spearman": c.rho}
            results["extrapolation"][name] = extrapolation(model, inputs, score, top=cfg.method.top_level)
            curve = c if name == "judge" else curve

    with staged_dir(out, force=force) as stage:
        atomic_write_text(stage / "results.json", json.dumps(results, indent=1))
        lq, restored, gt = grid_sets[-1]
        write_image(stage / "grid.png", before_after_grid(lq, restored, gt).astype(np.float32) / 255.0)
        if curve is not None:
            plot_level_curve(curve, stage / "levels.png", title=f"{cfg.task} {cfg.train.method}, judged")
    return results


def _body(argv: Sequence[str] | None) -> int:
    from qt_core.quiet import quiet_libraries
    from qt_core.zoo import is_zoo_name, resolve_checkpoint
    from qt_train.evaluate import EVAL_LIMIT, EVAL_SIZE

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by qt-train, or a zoo model: zoo:TASK")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json, levels.png, grid.png")
    parser.add_argument("--pairs", type=Path, help="paired folder with lq/ and gt/ (default: held-out synthetic pairs)")
    parser.add_argument("--real", type=Path, action="append", default=[], help="real images/folders/videos (repeatable)")
    parser.add_argument("--quality", type=float, help="quality level (default: top level for conditioned students)")
    parser.add_argument("--size", type=int, default=EVAL_SIZE, help="centre-crop side for evaluation images")
    parser.add_argument("--limit", type=int, default=EVAL_LIMIT, help="images per set")
    parser.add_argument("--config", help="run config, for checkpoints that carry none")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = parser.parse_args(argv)
    quiet_libraries(args.verbose)
    if is_zoo_name(str(args.checkpoint)):
        args.checkpoint = resolve_checkpoint(str(args.checkpoint))
    results = evaluate_checkpoint(args.checkpoint, args.out, args.pairs, args.real, args.quality, args.size,
                                  args.limit, args.force, args.config)
    for name, m in results["paired"].items():
        print(f"{name:>10}: PSNR {m['psnr']:.2f} dB (input {m['input_psnr']:.2f}), SSIM {m['ssim']:.3f}; "
              f"judge {m['output_scores']['judge']:.3f} (input {m['input_scores']['judge']:.3f}), "
              f"reward {m['output_scores']['reward']:.3f}")
    for name in results.get("level_curve", {}):
        print(f"by the {name}: level curve Spearman ρ = {results['level_curve'][name]['spearman']:.2f}; top level "
              f"beats best PL on {100 * results['extrapolation'][name]['fraction_top_beats_best_pl']:.0f}% of images")
    print(f"wrote {args.out}/results.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
