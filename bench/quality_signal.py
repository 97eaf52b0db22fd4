"""Is the quality signal able to teach? IQA scores of the teacher's PL candidates against their truth.

QualiTeacher conditions the student on each pseudo-label's quality level, so the levels are only
worth learning if the IQA scores that set them order PLs the way ground truth does. For each
task: the base model (stage 1) restores ``--n`` validation pairs (``realistic`` domain, 128-px
patches like the unlabelled training batches) under every multi-augment view, exactly as
``teacher_candidates`` makes PLs; each candidate is scored by every IQA model the project has —
the reward ensemble's members (project NIQE, PIQE, ranked CNNIQA), BRISQUE-LIVE and the
published-model NIQE — and by the ensemble, then Spearman's ρ against the candidate's true PSNR
and SSIM is reported (sign-adjusted: +1 = the score orders PLs exactly as ground truth does).
``pooled``: over all candidates (what level thresholds see); ``within``: mean ρ over the views of
one image (what the bank's best-k choice sees).

The validation pairs come from photos no run trains on and no evaluation reports
(``qt_train.data.unseen``), so choosing members here cannot leak. (Until the claim's photo study,
they were crops of the training photos: the table in docs/results.md was measured on those.)

  python bench/quality_signal.py --ckpt-pattern 'runs/fidelity/{task}/edge_guided/last.ckpt' --out runs/quality_signal
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from claim import REPO
from machine import describe_machine  # bench/machine.py: the CPU and its ISA

TASKS = ("dehaze", "derain", "desnow", "lowlight", "underwater")


def validation_pairs(task: str, n: int, size: int):
    from qt_train.data.streams import validation_pairs as pairs

    held = pairs(task, n, size)
    return held.lq, held.gt


def score_candidates(task: str, ckpt: Path, n: int, size: int) -> dict:
    import torch

    from qt_train.checkpoint import load_checkpoint, model_from_state
    from qt_train.iqa import Ensemble
    from qt_train.iqa.judges import build_judges
    from qt_train.method.agreement import consensus, view_agreement
    from qt_train.method.objectives import teacher_candidates
    from qt_train.metrics import psnr, ssim

    model = model_from_state(load_checkpoint(ckpt), str(ckpt))
    lq, gt = validation_pairs(task, n, size)
    with torch.no_grad():
        cands = torch.cat([teacher_candidates(model, lq[i : i + 8], ("identity", "hflip", "vflip", "rot90"))
                           for i in range(0, n, 8)], dim=1).clamp(0, 1)  # (V, N, 3, H, W)
    v = cands.shape[0]
    flat = cands.reshape(v * n, *cands.shape[2:])
    truth = {"psnr": psnr(flat, gt.repeat(v, 1, 1, 1)).numpy(), "ssim": ssim(flat, gt.repeat(v, 1, 1, 1)).numpy()}
    ensemble = Ensemble()
    scores = ensemble.score(flat, use_cache=False)
    higher = {m.name: m.direction == "higher" for m in ensemble.spec.members}
    signed = {name: (raw.numpy() if higher[name] else -raw.numpy()) for name, raw in scores.raw.items()}
    signed["ensemble"] = scores.combined.numpy()
    for name, judge in build_judges().items():  # lower is better for both
        signed[name] = -np.array([judge(flat[i : i + 1]) for i in range(len(flat))])
    signed["view_agreement"] = view_agreement(cands).reshape(-1).numpy()  # no model: the views' consensus
    centre = consensus(cands)
    truth_consensus = {"psnr": psnr(centre, gt).tolist(), "ssim": ssim(centre, gt).tolist()}
    return {"consensus_truth": truth_consensus, "task": task, "ckpt": str(ckpt), "views": v, "n": n, "truth": {k: t.tolist() for k, t in truth.items()},
            "signed_scores": {k: s.tolist() for k, s in signed.items()},
            "levels": scores.level.tolist()}


def correlations(record: dict) -> dict[str, dict[str, float]]:
    from qt_train.evaluate import spearman

    v, n = record["views"], record["n"]
    out = {}
    for name, s in record["signed_scores"].items():
        s = np.asarray(s)
        row = {}
        for key, t in record["truth"].items():
            t = np.asarray(t)
            row[f"pooled_{key}"] = spearman(s, t)
            within = [spearman(s.reshape(v, n)[:, j], t.reshape(v, n)[:, j]) for j in range(n)]
            row[f"within_{key}"] = float(np.nanmean(within))
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from qt_core.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--ckpt-pattern", default="runs/fidelity/{task}/edge_guided/last.ckpt")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "quality_signal")
    args = parser.parse_args(argv)
    machine = describe_machine()
    print(machine, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| task | score | ρ PSNR pooled | ρ SSIM pooled | ρ PSNR within image | ρ SSIM within image |",
             "|---|---|---|---|---|---|"]
    gains = ["| task | PSNR of a view (mean) | best view (oracle) | consensus of the views | its SSIM |",
             "|---|---|---|---|---|"]
    for task in args.tasks:
        path = args.out / f"{task}.json"
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = score_candidates(task, REPO / args.ckpt_pattern.format(task=task), args.n, args.size)
            record["correlations"] = correlations(record)
            atomic_write_text(path, json.dumps(record))
        for name, row in record["correlations"].items():
            lines.append(f"| {task} | {name} | {row['pooled_psnr']:+.2f} | {row['pooled_ssim']:+.2f} | "
                         f"{row['within_psnr']:+.2f} | {row['within_ssim']:+.2f} |")
        print("\n".join(lines[-len(record["correlations"]):]), flush=True)
        views, centre = np.asarray(record["truth"]["psnr"]), np.asarray(record["consensus_truth"]["psnr"])
        gains.append(f"| {task} | {views.mean():.2f} | {views.reshape(record['views'], -1).max(0).mean():.2f} | "
                     f"{centre.mean():.2f} | {np.mean(record['consensus_truth']['ssim']):.3f} |")
    report = "\n".join(lines) + "\n\nThe views' consensus (per-pixel median) as a PL:\n\n" + "\n".join(gains)
    atomic_write_text(args.out / "quality_signal.md", machine + "\n\n" + report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
