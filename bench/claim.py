"""The claim, measured: does the quality-conditioned student beat its baselines at equal compute?

For each task: one base model (stage 1, supervised on `synthetic` pairs), then from the same
base weights and for the same number of iterations, the same labelled and unlabelled batches:
  supervised     (control: the labelled branch alone — is a gain more than extra training?)
  mean_teacher   (unconditioned, every PL trusted)
  reliable_bank  (Semi-UIR style: a PL replaced only when it out-scores stored PL and student)
  qualiteacher   (every PL kept, conditioned on its quality level, preference + cropped consistency)
Unlabelled "real" images are `realistic`-domain images (shifted distribution) whose ground truth
is never used in training; evaluation is on held-out `realistic` pairs from clean images no
training or IQA fit saw (PSNR/SSIM), and on real photographs from ../shared/data/real when present
(IQA ensemble score of the output, no ground truth exists).

  python bench/claim.py --tasks dehaze lowlight --out runs/claim      # writes runs/claim/claim.md

Budget (stated in the table): by default 3000 base iterations and 1000 iterations per method,
batch 8 labelled + 4 real patches of 128 px, on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from machine import describe_machine  # bench/machine.py: the CPU and its ISA

REPO = Path(__file__).resolve().parents[1]
REAL_DIRS = {"dehaze": "hazy", "lowlight": "lowlight", "derain": "rainy", "desnow": "snowy", "underwater": "underwater"}
METHODS = ("supervised", "mean_teacher", "reliable_bank", "qualiteacher")


def settings(args: argparse.Namespace) -> list[str]:
    """Overrides shared by every run of the benchmark (the budget)."""
    start = max(1, args.iterations // 5)  # the reference starts preference/consistency at 10-20% of training
    return [
        f"train.iterations={args.iterations}", f"train.base_lr={args.base_lr}", f"train.optim.lr={args.lr}",
        f"train.ema_decay={args.ema}", "train.batch=8", "train.real_batch=4", f"train.n_real={args.n_real}",
        "data.patch=128", f"data.n_train={args.n_train}", "data.n_val=32", "train.log_every=50",
        f"train.eval_every={args.iterations}", f"train.ckpt_every={args.iterations}", f"train.image_every={10**9}",
        f"method.preference_start={start}", f"method.consistency_start={start}", f"train.threads={args.threads}",
    ]


def run_train(task: str, run_dir: Path, overrides: list[str]) -> Path:
    from qt_train.schema import load_run_config
    from qt_train.train.loop import train

    cfg = load_run_config(REPO / "configs" / f"{task}.yaml", overrides)
    if (run_dir / "last.ckpt").exists():
        from qt_train.checkpoint import load_checkpoint

        done = load_checkpoint(run_dir / "last.ckpt")["iteration"]
        if done >= cfg.train.base_iterations * (cfg.train.init is None) + cfg.train.iterations:
            return run_dir / "last.ckpt"  # finished earlier: reuse (the benchmark can be resumed)
        return train(cfg, run_dir, resume=True, argv=["bench/claim.py"], progress=False)
    return train(cfg, run_dir, argv=["bench/claim.py", *overrides], progress=False)


def iteration_time(run_dir: Path) -> float:
    """Mean seconds per stage-2 iteration, from the run's metrics log."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    times = [r["time/iteration_s"] for r in records if r.get("stage") == "semi" and "time/iteration_s" in r]
    return sum(times) / max(1, len(times))


def evaluate(task: str, ckpt: Path, real_dir: Path | None) -> dict:
    from qt_train.checkpoint import load_checkpoint, model_from_state
    from qt_train.config import build
    from qt_train.eval_cli import _load_images
    from qt_train.evaluate import extrapolation, level_curve, paired_metrics, run_model
    from qt_train.iqa import Ensemble
    from qt_train.schema import RunConfig, degradation_params
    from qt_train.train.sources import held_out_pairs

    state = load_checkpoint(ckpt)
    cfg = build(RunConfig, state["config"])
    model = model_from_state(state, str(ckpt))
    conditioned = cfg.train.method == "qualiteacher" and cfg.method.conditioning
    q = cfg.method.top_level if conditioned else None
    ens = Ensemble()
    held = held_out_pairs(cfg, degradation_params(cfg), "realistic", n=32, size=256)
    out = run_model(model, held.lq, q)
    result = {"heldout": paired_metrics(out, held.gt, held.lq),
              "heldout_score": float(ens.score(out, use_cache=False).combined.mean()),
              "heldout_input_score": float(ens.score(held.lq, use_cache=False).combined.mean())}
    if real_dir is not None and real_dir.is_dir():
        x = _load_images([real_dir], 256, 64)
        y = run_model(model, x, q)
        result["real"] = {"n": len(x), "input_score": float(ens.score(x, use_cache=False).combined.mean()),
                          "output_score": float(ens.score(y, use_cache=False).combined.mean())}
    if conditioned:
        curve = level_curve(model, held.lq, ens)
        result["level_curve"] = {"scores": curve.scores, "spearman": curve.rho}
        result["extrapolation_heldout"] = extrapolation(model, held.lq, ens)
        if "real" in result:
            result["extrapolation_real"] = extrapolation(model, _load_images([real_dir], 256, 64), ens)
    return result


def table(results: dict, args: argparse.Namespace, real_root: Path) -> str:
    lines = [
        f"Budget: {args.base_iterations} base iterations, then {args.iterations} iterations per method "
        f"(batch 8 labelled + 4 unlabelled 128-px patches; lr {args.lr}, EMA {args.ema}; preference and "
        f"cropped consistency from iteration {max(1, args.iterations // 5)}); {args.threads} thread(s).",
        f"Real photos: {real_root if real_root.is_dir() else 'not present — real-photo columns empty'}.",
        "",
        "| task | method | held-out PSNR (input) | SSIM | score held-out | score real photos (input) | s/iteration | top level beats best PL |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, per in results.items():
        for method, r in per.items():
            h = r["heldout"]
            real = r.get("real")
            real_s = f"{real['output_score']:.3f} ({real['input_score']:.3f})" if real else "–"
            extra = ""
            if "extrapolation_heldout" in r:
                extra = f"{100 * r['extrapolation_heldout']['fraction_top_beats_best_pl']:.0f}% held-out"
                if "extrapolation_real" in r:
                    extra += f", {100 * r['extrapolation_real']['fraction_top_beats_best_pl']:.0f}% real"
            lines.append(
                f"| {task} | {method} | {h['psnr']:.2f} ({h['input_psnr']:.2f}) | {h['ssim']:.3f} | "
                f"{r['heldout_score']:.3f} | {real_s} | {r['time_s']:.3f} | {extra} |"
            )
    lines.append("")
    for task, per in results.items():
        qt = per.get("qualiteacher", {})
        if "level_curve" in qt:
            scores = ", ".join(f"{s:.3f}" for s in qt["level_curve"]["scores"])
            lines.append(f"- {task} per-level curve (levels 0..7 → held-out output score): {scores}; "
                         f"Spearman ρ = {qt['level_curve']['spearman']:.2f}")
        if "mean_teacher" in per and "qualiteacher" in per:
            over = per["qualiteacher"]["time_s"] / max(1e-9, per["mean_teacher"]["time_s"])
            lines.append(f"- {task} QualiTeacher iteration time = {over:.1f}× mean_teacher's")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["dehaze", "lowlight"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "claim")
    parser.add_argument("--base-iterations", type=int, default=3000)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--base-lr", type=float, default=2e-4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--n-real", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real-root", type=Path, default=REPO.parent / "shared" / "data" / "real")
    args = parser.parse_args(argv)
    print(describe_machine(), flush=True)  # numbers belong to one CPU class

    results: dict = {}
    for task in args.tasks:
        common = settings(args)
        base = run_train(task, args.out / task / "base",
                         [*common, "train.method=supervised", f"train.base_iterations={args.base_iterations}",
                          "train.iterations=0"])
        results[task] = {}
        for method in args.methods:
            run_dir = args.out / task / method
            tick = time.time()
            ckpt = run_train(task, run_dir, [*common, f"train.method={method}", f"train.init={base}"])
            r = evaluate(task, ckpt, args.real_root / REAL_DIRS[task])
            r["time_s"] = iteration_time(run_dir)
            r["wall_s"] = time.time() - tick
            results[task][method] = r
            print(f"{task} {method}: {json.dumps(r)}", file=sys.stderr, flush=True)
        (args.out / "claim.json").write_text(json.dumps(results, indent=1))
    md = table(results, args, args.real_root)
    (args.out / "claim.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
