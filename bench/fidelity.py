"""Fidelity of each backbone at equal training budget: held-out `realistic` PSNR/SSIM (RGB and Y).

For every task and backbone: stage 1 only (supervised on `synthetic` pairs, the claim benchmark's
base budget: 3000 iterations, batch 8 of 128 px, lr 2e-4), then 32 held-out `realistic` pairs at
256 px from clean images no training or IQA fit saw. The same seed, data and schedule for every
backbone, so the only difference is the network. Runs resume from their checkpoints; a finished
run is reused, so the benchmark can be stopped and restarted.

  python bench/fidelity.py --tasks dehaze underwater --archs edge_unet edge_guided --out runs/fidelity

Each backbone's per-task options come from ``TASK_OPTIONS`` (the physical head that fits the task).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from claim import REPO, run_train
from machine import describe_machine  # bench/machine.py: the CPU and its ISA

# The per-task options of each backbone: the one table of what each task's head is.
TASK_OPTIONS: dict[str, dict[str, dict]] = {
    "edge_unet": {},
    "edge_guided": {
        "dehaze": {"head": "haze"},
        "underwater": {"head": "water", "detail_width": 12},
        "lowlight": {"head": "gain", "detail_width": 12},
        "derain": {"head": "affine", "detail_width": 16, "detail_blocks": 1},
        "desnow": {"head": "affine", "detail_width": 16, "detail_blocks": 1},
    },
}


def arch_overrides(arch: str, task: str) -> list[str]:
    opts = TASK_OPTIONS.get(arch, {}).get(task, {})
    return [f"model.arch={arch}", *(f"model.options.{k}={json.dumps(v)}" for k, v in opts.items())]


def evaluate_heldout(ckpt: Path) -> dict:
    """PSNR/SSIM (RGB and Y, and of the input) on qt-eval's held-out ``realistic`` pairs (32 at 256 px):
    its student and pairs (:mod:`qt_train.evaluate`), without its IQA scoring."""
    from qt_train.evaluate import EVAL_LIMIT, EVAL_SIZE, heldout_sets, load_student, paired_metrics, run_model

    n, size = EVAL_LIMIT, EVAL_SIZE
    student = load_student(ckpt)
    lq, gt = heldout_sets(student.cfg, n, size, ("realistic",))["realistic"]
    return paired_metrics(run_model(student.model, lq, student.quality), gt, lq)


def main(argv: list[str] | None = None) -> int:
    from qt_core.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["dehaze", "derain", "desnow", "lowlight", "underwater"])
    parser.add_argument("--archs", nargs="+", default=list(TASK_OPTIONS))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fidelity")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    print(describe_machine(), file=sys.stderr)

    common = ["train.method=supervised", f"train.base_iterations={args.iterations}", "train.iterations=0",
              f"train.base_lr={args.lr}", "train.batch=8", "data.patch=128", "data.n_train=256", "data.n_val=32",
              "train.log_every=100", f"train.eval_every={args.iterations}", "train.ckpt_every=250",
              f"train.image_every={10**9}", f"train.threads={args.threads}"]
    for task in args.tasks:
        for arch in args.archs:
            run_dir = args.out / task / arch
            ckpt = run_train(task, run_dir, [*common, *arch_overrides(arch, task)])
            metrics = evaluate_heldout(ckpt)
            atomic_write_text(run_dir / "heldout.json", json.dumps(metrics, indent=1))
            print(f"{task} {arch}: {json.dumps(metrics)}", file=sys.stderr, flush=True)
    # The table holds every finished run under --out (other invocations may have added tasks).
    lines = ["| task | backbone | PSNR | SSIM | PSNR-Y | SSIM-Y | input PSNR / SSIM |", "|---|---|---|---|---|---|---|"]
    for path in sorted(args.out.glob("*/*/heldout.json")):
        task, arch, m = path.parent.parent.name, path.parent.name, json.loads(path.read_text())
        lines.append(f"| {task} | {arch} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['psnr_y']:.2f} | "
                     f"{m['ssim_y']:.3f} | {m['input_psnr']:.2f} / {m['input_ssim']:.3f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
