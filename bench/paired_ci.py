"""How sure is a claim row's lead? Paired per-image differences with bootstrap intervals.

A mean PSNR gap of 0.2 dB over 32 images can be noise. Two models restore the same images, so
the per-image differences say whether a gap would survive another image set. For each task of a
claim folder (`bench/claim.py --out`), every method is compared with the control on: the claim's
held-out pairs; the validation pairs (photos no run trains on: `qt_train.data.unseen`, what
chooses the winner); the held-out role of those photos; and new crops of the training photos.
Per set: the mean difference in PSNR (RGB and Y) and SSIM, its 95% bootstrap interval over images,
and the share of images the method wins. A lead whose interval holds 0 is not a lead; a lead that
changes from the training photos to unseen ones measures what the runs memorised.

  python bench/paired_ci.py --claim runs/claim-realistic [--control supervised] [--out runs/paired_ci]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from claim import REPO, VALIDATION_PAIRS, claim_folder, write_tables
from machine import describe_machine  # bench/machine.py: the CPU and its ISA
from paired import RESAMPLES, bootstrap  # bench/paired.py

METRICS = ("psnr", "psnr_y", "ssim")


def per_image(model, quality, lq, gt) -> dict[str, np.ndarray]:
    """PSNR (RGB, Y) and SSIM of every image, not their mean."""
    from qt_train.evaluate import per_image_metrics, run_model

    return {k: v.numpy() for k, v in per_image_metrics(run_model(model, lq, quality), gt).items() if k in METRICS}


PHOTO_SEED = 0x9A1D  # a stream no run, evaluation or validation draws from


def training_photo_pairs(task: str, n: int, size: int, params) -> tuple:
    """``realistic`` pairs from new crops of the photos every labelled batch crops (no dead leaves)."""
    from qt_train.data.clean import sample_clean
    from qt_train.data.degrade import TASKS, degrade
    from qt_train.data.streams import nchw

    rng = np.random.default_rng([PHOTO_SEED, TASKS.index(task)])
    gt = sample_clean("package_photos", n, size, rng, split="train")
    lq, _ = degrade(task, "realistic", gt, rng, params=params)
    return nchw(lq), nchw(gt)


def image_sets(ckpt: Path) -> dict[str, tuple]:
    """The claim's held-out pairs, the validation pairs (photos no run trains on), pairs from the
    held-out role of those photos, and new crops of the training photos: a lead that shrinks or
    flips from the training photos to unseen ones measures what the runs memorised."""
    from qt_train.data.unseen import unseen_pairs
    from qt_train.evaluate import EVAL_LIMIT, EVAL_SIZE, heldout_sets, load_student
    from qt_train.schema import degradation_params

    cfg = load_student(ckpt).cfg
    params = degradation_params(cfg)
    return {"held-out": heldout_sets(cfg, EVAL_LIMIT, EVAL_SIZE, ("realistic",))["realistic"],
            "validation": unseen_pairs(cfg.task, "validation", VALIDATION_PAIRS, EVAL_SIZE, params),
            "unseen photos": unseen_pairs(cfg.task, "heldout", VALIDATION_PAIRS, EVAL_SIZE, params),
            "training photos": training_photo_pairs(cfg.task, EVAL_LIMIT, EVAL_SIZE, params)}


def compare(task_dir: Path, control: str) -> dict[str, dict]:
    """{method: {set: {metric: {mean, low, high, wins}}}} against ``control`` for one task."""
    import torch

    from qt_train.evaluate import load_student

    runs = sorted(p.parent for p in task_dir.glob("*/last.ckpt") if p.parent.name != "base")
    if control not in {r.name for r in runs}:
        raise SystemExit(f"{task_dir}: no {control} run to compare with (run bench/claim.py --methods {control})")
    sets = image_sets(task_dir / control / "last.ckpt")
    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with torch.no_grad():
        for run in runs:
            student = load_student(run / "last.ckpt")
            mine = image_sets(run / "last.ckpt")
            for name, (lq, gt) in sets.items():  # pairing is only valid on identical images
                if not (torch.equal(mine[name][0], lq) and torch.equal(mine[name][1], gt)):
                    raise SystemExit(f"{run}: its {name} images differ from {control}'s; the runs are not comparable")
            scores[run.name] = {name: per_image(student.model, student.quality, lq, gt)
                                for name, (lq, gt) in sets.items()}
    result = {}
    for method, by_set in scores.items():
        if method == control:
            continue
        result[method] = {}
        for name, metrics in by_set.items():
            result[method][name] = {}
            for m in METRICS:
                diff = metrics[m] - scores[control][name][m]
                low, high = bootstrap(diff)
                result[method][name][m] = {"mean": float(diff.mean()), "low": low, "high": high,
                                           "wins": float((diff > 0).mean()), "n": len(diff)}
    return result


def table(results: dict[str, dict], control: str) -> str:
    lines = [f"Paired differences against `{control}` (method − control), mean and 95% bootstrap interval over "
             f"images ({RESAMPLES} resamples); wins: share of images where the method is better.", "",
             "| task | method | set | n | Δ PSNR [95% CI] | wins | Δ PSNR-Y [95% CI] | Δ SSIM [95% CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for task, per in results.items():
        for method, by_set in per.items():
            for name, r in by_set.items():
                p, y, s = r["psnr"], r["psnr_y"], r["ssim"]
                lines.append(f"| {task} | {method} | {name} | {p['n']} | {p['mean']:+.2f} [{p['low']:+.2f}, "
                             f"{p['high']:+.2f}] | {100 * p['wins']:.0f}% | {y['mean']:+.2f} [{y['low']:+.2f}, "
                             f"{y['high']:+.2f}] | {s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}] |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claim", type=Path, required=True, help="a bench/claim.py --out folder")
    parser.add_argument("--tasks", nargs="+", default=None, help="default: every task folder with a control run")
    parser.add_argument("--control", default="supervised")
    parser.add_argument("--out", type=Path, default=None, help="default: CLAIM/paired_ci.{json,md}")
    args = parser.parse_args(argv)
    claim_folder(args.claim)
    print(describe_machine(), flush=True)
    tasks = args.tasks or sorted(p.name for p in args.claim.iterdir() if (p / args.control / "last.ckpt").is_file())
    results = {task: compare(args.claim / task, args.control) for task in tasks}
    md = table(results, args.control)
    write_tables(args.out or args.claim, "paired_ci", results, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
