"""Quality levels from the distribution of the PLs themselves (quantiles of the memory bank).

Why: with the reference rule (level = 7 if s >= 0.7 else floor(10 s)) the default ensemble put
90% of the bank's PLs at levels 6-7 and none below 2 (docs/results.md), so the student saw almost
one level and had nothing to learn from the condition. Cutting at the bank's quantiles gives
every level about 1/K of the PLs whatever the ensemble's scale, and the cuts follow the PLs as
the teacher improves. Pure functions; the training loop stores the cuts in the checkpoint.
"""

from __future__ import annotations

import torch


def quantile_cuts(qualities: torch.Tensor, levels: int, min_count: int = 16) -> torch.Tensor | None:
    """The ``levels - 1`` cut points at the k/levels quantiles of the finite ``qualities``, or None
    while fewer than ``min_count`` are known (then the caller keeps the reference rule)."""
    q = qualities.double()
    q = q[torch.isfinite(q)]
    if q.numel() < max(min_count, 2):
        return None
    return torch.quantile(q, torch.arange(1, levels, dtype=torch.float64) / levels)


def level_of(quality: torch.Tensor | float, cuts: torch.Tensor) -> torch.Tensor:
    """Level 0..K-1 of each quality: the number of cut points <= it (ties go up, as ``to_level``)."""
    q = torch.as_tensor(quality, dtype=torch.float64)
    return torch.bucketize(q, cuts, right=True).long()
