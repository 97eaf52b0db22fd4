"""Cost of each registered backbone at 640x360: parameters, GMACs, PyTorch FP32 CPU latency.

  python bench/backbones.py [--height 360 --width 640 --threads 2]
"""

from __future__ import annotations

import argparse

from machine import describe_machine  # bench/machine.py: the CPU and its ISA


def main(argv: list[str] | None = None) -> int:
    import torch

    from qt_train.models import BACKBONES, build_backbone
    from qt_train.models.profile import count_macs, count_params, cpu_latency_ms

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe_machine(), flush=True)  # numbers belong to one CPU class
    torch.set_num_threads(args.threads)
    print(f"| backbone | params | GMAC at {args.width}x{args.height} | PyTorch FP32 eager, {args.threads} threads |")
    print("|---|---:|---:|---:|")
    for name in BACKBONES:
        model = build_backbone(name).eval()
        macs = count_macs(model, args.height, args.width)
        ms = cpu_latency_ms(model, args.height, args.width, runs=3, warmup=1)
        print(f"| {name} | {count_params(model):,} | {macs / 1e9:.2f} | {ms:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
