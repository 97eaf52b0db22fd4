"""Benchmark the default IQA ensemble: does each member rank degradation severity, and how fast?

For every task and both domains (and generic noise / blur / JPEG), held-out clean crops (photos chelsea / grace_hopper and
dead-leaves images from a stream the fits never drew from) are degraded at severities
0, .25, .5, .75, 1 with the same nuisance draws per image. For each member (normalised score)
and the ensemble (combined score), the per-image Spearman rho between quality order (-severity)
and score is averaged over images: +1 means the score falls with every severity step.
Throughput: images/s of ``Ensemble.score`` (no cache) and of each member alone, at 256x256,
batch 8, on this machine's CPU.

Run: ``python bench/iqa_bench.py [--out docs/iqa_bench.md] [--images 8] [--threads 2]``
Prints a markdown table (and writes it to ``--out`` if given). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import describe_machine  # bench/machine.py: the CPU and its ISA

from calibration.rank_fit import (  # noqa: E402
    EVAL_SEVERITIES,
    all_kinds,
    held_out_clean,
    ladder_spearman,
    severity_ladder,
)
from qt_core.atomic import atomic_write_text  # noqa: E402
from qt_train.iqa import Ensemble  # noqa: E402


def to_nchw(x: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) float32 -> (M, 3, H, W)."""
    flat = x.reshape(-1, *x.shape[-3:])
    return torch.from_numpy(np.ascontiguousarray(flat.transpose(0, 3, 1, 2)))


def rho_table(ens: Ensemble, clean: np.ndarray, seed: int) -> dict[tuple[str, str], dict[str, float]]:
    """Mean per-image rho of each member and the ensemble, per (task, domain); generic
    distortions (noise, blur, JPEG) get domain "-"."""
    table = {}
    n, s = clean.shape[0], len(EVAL_SEVERITIES)
    for kind in all_kinds():
        lad = severity_ladder(kind, clean, seed)
        sc = ens.score(to_nchw(lad), use_cache=False)
        row = {m: float(ladder_spearman(sc.norm[m].reshape(n, s).numpy()).mean()) for m in ens.spec.names}
        row["ensemble"] = float(ladder_spearman(sc.combined.reshape(n, s).numpy()).mean())
        task, _, domain = kind.partition("/")
        table[(task, domain or "-")] = row
    return table


def _rate(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times)


def throughput(ens: Ensemble, size: int = 256, batch: int = 8, repeats: int = 3) -> dict[str, float]:
    """Images per second at ``size`` x ``size``, ``batch`` images per call: each member and all."""
    x = to_nchw(held_out_clean(batch, size, seed=7))
    rates = {}
    for name in ens.spec.names:
        metric = ens.metrics[name]

        def run(b, metric=metric):
            with torch.no_grad():
                metric(b)

        rates[name] = _rate(run, x, repeats)
    rates["ensemble"] = _rate(lambda b: ens.score(b, use_cache=False), x, repeats)
    return rates


def markdown(table, rates, args, n_images: int) -> str:
    names = list(next(iter(table.values())))
    lines = [
        f"Per-image Spearman rho (quality order vs score), mean over {n_images} held-out "
        f"{args.size}x{args.size} images, severities {', '.join(str(s) for s in EVAL_SEVERITIES)}.",
        "",
        "| task | domain | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for (task, domain), row in table.items():
        lines.append(f"| {task} | {domain} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")
    tasks = [r for (_, d), r in table.items() if d != "-"]
    means = {n: statistics.mean(r[n] for r in tasks) for n in names}
    lines.append("| **mean, tasks** | | " + " | ".join(f"**{means[n]:.2f}**" for n in names) + " |")
    lines += [
        "",
        f"Throughput, images/s at {args.size}x{args.size}, batch 8, CPU, "
        f"{torch.get_num_threads()} torch thread(s):",
        "",
        "| " + " | ".join(rates) + " |",
        "|" + "---:|" * len(rates),
        "| " + " | ".join(f"{v:.1f}" for v in rates.values()) + " |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="also write the markdown table to this file")
    ap.add_argument("--images", type=int, default=8, help="held-out clean images per ladder set")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0, help="degradation seed")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    print(describe_machine(), flush=True)  # numbers belong to one CPU class
    if args.threads:
        torch.set_num_threads(args.threads)
    ens = Ensemble(device="cpu")
    clean = held_out_clean(args.images, args.size)
    t0 = time.perf_counter()
    table = rho_table(ens, clean, args.seed)
    rates = throughput(ens, size=args.size)
    text = markdown(table, rates, args, args.images)
    print(text)
    print(f"(ranking pass {time.perf_counter() - t0:.0f}s)")
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
