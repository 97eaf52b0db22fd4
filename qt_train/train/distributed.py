"""Data-parallel training under `torchrun`: gloo on CPU, nccl on GPU.

Gradients are averaged with one flat all-reduce after backward instead of wrapping the model
in DistributedDataParallel: a QualiTeacher step runs the student several times (per PL, per
level, on crops) before one backward, which DDP's hooks handle poorly, and an explicit
all-reduce keeps the loop readable. Ranks start from identical weights (same seed, or a
broadcast), so averaged gradients keep them identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); otherwise single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def teardown(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if d.world <= 1:
        return
    import torch.distributed as dist

    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], d: Dist) -> None:
    """Average .grad over ranks with one flat all-reduce (missing grads count as zero)."""
    if d.world <= 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= d.world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def mean_scalar(value: float, d: Dist) -> float:
    if d.world <= 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item() / d.world)


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every rank's `obj`, in rank order (for checkpointing per-rank memory banks)."""
    if d.world <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank if `flag` is true on any (so all ranks stop together on NaN)."""
    if d.world <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
