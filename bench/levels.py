"""Which quality level should a conditioned student serve, and are the levels below it ordered?

The method serves the top level (the level the labelled branch trains at). Whether another level
restores better, and whether the levels below the top order fidelity at all, is a question for
ground truth, not for an IQA model: for every conditioned run of a claim folder (`bench/claim.py
--out`), PSNR at each level on the validation photos and on the held-out role of the photos no run
trains on (`qt_train.data.unseen`). Per set: the mean PSNR per level, Spearman ρ between level and
PSNR, the top level's lead over the best lower level, and the paired 95% interval of the best lower
level against the top (`bench/paired.py`): a lower level would be served only if that interval on
the validation photos lay above 0.

  python bench/levels.py --claim runs/claim-realistic [--methods qt_agree]   # writes CLAIM/levels.{json,md}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from claim import REPO, VALIDATION_PAIRS, claim_folder, write_tables
from machine import describe_machine  # bench/machine.py: the CPU and its ISA
from paired import pick_winner  # bench/paired.py

SETS = {"validation": "validation", "unseen photos": "heldout"}  # table name -> qt_train.data.unseen role


def per_level_psnr(ckpt: Path) -> dict[str, list[list[float]]]:
    """``{set: [level][image] PSNR}`` of one conditioned checkpoint."""
    from qt_train.data.unseen import unseen_pairs
    from qt_train.evaluate import EVAL_SIZE, load_student, per_image_metrics, run_model
    from qt_train.schema import degradation_params

    student = load_student(ckpt)
    if not student.conditioned:
        raise SystemExit(f"{ckpt}: not a quality-conditioned run; it has no levels to compare")
    params = degradation_params(student.cfg)
    levels = range(student.model.quality_embed.levels)
    result = {}
    for name, role in SETS.items():
        lq, gt = unseen_pairs(student.cfg.task, role, VALIDATION_PAIRS, EVAL_SIZE, params=params)
        result[name] = [per_image_metrics(run_model(student.model, lq, float(q)), gt)["psnr"].tolist() for q in levels]
    return result


def summary(per_level: list[list[float]]) -> dict:
    """Mean PSNR per level, ρ(level, PSNR), the top level's lead, and the serving rule's verdict."""
    from qt_train.evaluate import spearman

    psnr = np.asarray(per_level)
    means = psnr.mean(1)
    top = len(means) - 1
    chosen, why = pick_winner({str(k): psnr[k] for k in range(len(means))}, str(top))
    return {"means": means.tolist(), "rho": spearman(np.arange(len(means)), means),
            "top_lead": float(means[top] - means[:top].max()), "serve": int(chosen),
            "why": why.replace("the control", "the top level")}


def table(results: dict[str, dict]) -> str:
    lines = ["| run | set | PSNR at level 0 … top | ρ (level, PSNR) | top − best lower level | serve |",
             "|---|---|---|---|---|---|"]
    for run, by_set in results.items():
        for name, s in by_set.items():
            lines.append(f"| {run} | {name} | {' '.join(f'{m:.2f}' for m in s['means'])} | {s['rho']:+.2f} | "
                         f"{s['top_lead']:+.2f} | {s['serve']} ({s['why']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claim", type=Path, required=True, help="a bench/claim.py --out folder")
    parser.add_argument("--methods", nargs="+", default=["qt_agree"], help="conditioned runs to read (claim.py names)")
    parser.add_argument("--out", type=Path, default=None, help="default: CLAIM/levels.{json,md}")
    args = parser.parse_args(argv)
    claim_folder(args.claim)
    print(describe_machine(), flush=True)
    results = {}
    for ckpt in sorted(args.claim.glob("*/*/last.ckpt")):
        if ckpt.parent.name in args.methods:
            run = f"{ckpt.parent.parent.name} {ckpt.parent.name}"
            results[run] = {name: summary(v) for name, v in per_level_psnr(ckpt).items()}
            print(table({run: results[run]}).splitlines()[-1], flush=True)
    if not results:
        raise SystemExit(f"{args.claim}: no finished run of {' '.join(args.methods)}")
    md = table(results)
    write_tables(args.out or args.claim, "levels", results, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
