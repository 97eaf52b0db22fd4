"""What one stage-2 iteration costs per method, as ratios to Mean Teacher measured in one run.

Each variant of the claim (bench/claim.py ``VARIANTS``) trains ``--iterations`` stage-2 iterations
from the same base checkpoint with the claim's batch (8 labelled + 4 unlabelled 128-px patches), with
the preference and consistency terms on from the first iteration (their steady state), in a
scratch folder; the median of each iteration's wall time (after ``--warmup``) is reported.
The rounds are interleaved (every variant once per round) so that a load change on the machine
hits every variant alike.

  python bench/iteration_cost.py --base runs/fidelity/dehaze/edge_guided/last.ckpt --out runs/iteration_cost
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from claim import REPO, VARIANTS
from fidelity import arch_overrides
from machine import describe_machine  # bench/machine.py: the CPU and its ISA


def iteration_times(task: str, base: Path, name: str, iterations: int, threads: int, seed: int) -> list[float]:
    """Wall seconds of each stage-2 iteration of one short run of variant ``name``."""
    from qt_train.schema import load_run_config
    from qt_train.train.loop import train

    method, extra = VARIANTS[name]
    overrides = [
        *arch_overrides("edge_guided", task), f"train.method={method}", f"train.init={base}", *extra,
        f"train.iterations={iterations}", "train.batch=8", "train.real_batch=4", "train.n_real=32", "data.patch=128",
        "data.n_train=32", "data.n_val=4", "train.log_every=1", f"train.eval_every={10**9}",
        f"train.ckpt_every={10**9}", f"train.image_every={10**9}", "method.preference_start=0",
        "method.consistency_start=0", f"train.threads={threads}", f"seed={seed}",
    ]
    cfg = load_run_config(REPO / "configs" / f"{task}.yaml", overrides)
    with tempfile.TemporaryDirectory(prefix="qt-iteration-cost-") as scratch:
        train(cfg, Path(scratch) / "run", argv=["bench/iteration_cost.py"], progress=False)
        records = [json.loads(line) for line in (Path(scratch) / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r["time/iteration_s"] for r in records if r.get("stage") == "semi" and "time/iteration_s" in r]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from qt_core.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="dehaze")
    parser.add_argument("--base", type=Path, required=True, help="stage-1 checkpoint every variant starts from")
    parser.add_argument("--methods", nargs="+", default=["mean_teacher", "qt_agree", "qt_fixed", "qualiteacher",
                                                         "reliable_bank", "supervised"], choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "iteration_cost")
    args = parser.parse_args(argv)
    if "mean_teacher" not in args.methods:
        raise SystemExit("--methods must include mean_teacher: the costs are ratios to it")
    machine = describe_machine()
    print(machine, flush=True)

    times: dict[str, list[float]] = {name: [] for name in args.methods}
    for r in range(args.rounds):
        for name in args.methods:
            times[name] += iteration_times(args.task, args.base, name, args.iterations, args.threads, r)[args.warmup:]
            print(f"round {r + 1}: {name} {statistics.median(times[name]):.3f} s/it", file=sys.stderr, flush=True)
    mt = statistics.median(times["mean_teacher"])
    lines = [f"Task {args.task}; {args.rounds} interleaved rounds of {args.iterations} stage-2 iterations "
             f"(first {args.warmup} dropped); batch 8 labelled + 4 unlabelled 128-px patches; "
             f"{args.threads} thread(s); preference and consistency on.", "",
             "| method | median s/it | x Mean Teacher |", "|---|---|---|"]
    for name in args.methods:
        med = statistics.median(times[name])
        lines.append(f"| {name} | {med:.3f} | {med / mt:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "iteration_cost.json", json.dumps({"machine": machine, "times": times}, indent=1))
    atomic_write_text(args.out / "iteration_cost.md", machine + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
