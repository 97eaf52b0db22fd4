"""Cost measurements of a backbone: parameters, multiply-accumulates, CPU latency."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, height: int, width: int, channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on a (1, channels, height, width) input.

    Counts what FlopCounterMode counts (convolutions and matmuls; one MAC = two FLOPs);
    element-wise ops are left out, as is usual for these figures.
    """
    x = torch.rand(1, channels, height, width)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@torch.no_grad()
def cpu_latency_ms(model: nn.Module, height: int, width: int, runs: int = 5, warmup: int = 2) -> float:
    """Median FP32 eager latency in milliseconds of a batch-1 forward on the current CPU threads."""
    x = torch.rand(1, 3, height, width)
    model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return times[len(times) // 2]
