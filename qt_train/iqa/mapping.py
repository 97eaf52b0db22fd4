"""Pure functions from raw member scores to the ensemble score, its level and block maps.

Why separate: these are the method's rules (normalise, weighted mean, quantise), tested
directly and shared by scoring, the preference reward and the block-weighted loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .spec import EnsembleSpec, Member


def normalise(raw: torch.Tensor, member: Member, leak: float = 0.0) -> torch.Tensor:
    """Map raw member scores to [0, 1], higher = better, clamped.

    Non-finite raw scores (a metric that cannot rate an image, e.g. NIQE on a flat frame)
    map to 0, the worst quality, so they never turn the ensemble score into NaN.
    Gradients flow where the raw score lies inside ``raw_range``; outside it, a hard clamp
    has zero gradient, so a reward whose raw score left the range could never climb back.
    ``leak > 0`` keeps the clamped *value* but lets ``leak`` times the unclamped gradient
    through outside the range (a leaky straight-through clamp); used by ``Ensemble.reward``.
    """
    import torch

    raw = torch.as_tensor(raw)
    if not raw.is_floating_point():
        raw = raw.float()
    lo, hi = member.raw_range
    t = (raw - lo) / (hi - lo)
    if member.direction == "lower":
        t = 1.0 - t
    clamped = t.clamp(0.0, 1.0)
    if leak > 0.0 and t.requires_grad:
        outside = (t < 0.0) | (t > 1.0)
        clamped = clamped + torch.where(outside, leak * (t - t.detach()), torch.zeros_like(t))
    return torch.where(torch.isfinite(raw), clamped, torch.zeros_like(clamped))


def member_weights(spec: EnsembleSpec) -> dict[str, float]:
    """Member weights normalised to sum to 1."""
    total = sum(m.weight for m in spec.members)
    return {m.name: m.weight / total for m in spec.members}


def combine(norm_scores: Mapping[str, torch.Tensor], spec: EnsembleSpec) -> torch.Tensor:
    """Weighted mean of normalised member scores (any common shape), weights summing to 1."""
    missing = [n for n in spec.names if n not in norm_scores]
    extra = [n for n in norm_scores if n not in spec.names]
    if missing or extra:
        raise ValueError(
            f"combine: scores do not match the spec members; missing {missing}, unexpected {extra}"
        )
    weights = member_weights(spec)
    total = None
    for name in spec.names:
        term = norm_scores[name] * weights[name]
        total = term if total is None else total + term
    return total


def to_level(score: torch.Tensor, spec: EnsembleSpec) -> torch.Tensor:
    """Quantise ensemble scores into levels 0..K-1 (LongTensor, same shape).

    thresholds None (K = 8): the reference rule, level = K-1 if s >= 0.7 else floor(10 s),
    clamped to 0..K-1. Custom thresholds: level = number of cut points <= s.
    NaN scores raise ValueError rather than becoming an arbitrary level.
    """
    import torch

    score = torch.as_tensor(score).detach()
    if torch.isnan(score).any():
        raise ValueError("to_level: score contains NaN")
    k = spec.levels
    if spec.thresholds is None:
        # Compare in the score's own dtype: float32 0.7 must count as >= 0.7.
        s = score if score.is_floating_point() else score.double()
        level = torch.where(s >= 0.7, torch.full_like(s, k - 1), torch.floor(10.0 * s))
    else:
        cuts = torch.tensor(
            spec.thresholds, dtype=score.dtype if score.is_floating_point() else torch.float64
        )
        level = torch.bucketize(score.to(cuts.dtype), cuts.to(score.device), right=True)
    return level.clamp(0, k - 1).long()


def block_grid(h: int, w: int, block: int) -> tuple[int, int]:
    """Blocks per column and row: partial edge blocks count (ceil), so every pixel has a block."""
    return math.ceil(h / block), math.ceil(w / block)


def window_starts(length: int, block: int, window: int) -> list[int]:
    """Start of the scoring window for each block along one axis.

    Each block (the last may be partial) is scored through a ``window``-long crop centred on
    the block and shifted to lie inside the image. Why: every window then has the same size,
    so all blocks of all images go through a member as one batch, and a member whose minimum
    exceeds the block (NIQE needs 96 px) sees context around the block instead of failing.
    """
    if window > length:
        raise ValueError(f"window {window} exceeds image side {length}")
    n = math.ceil(length / block)
    starts = []
    for i in range(n):
        b0 = i * block
        centre = b0 + min(block, length - b0) / 2.0
        starts.append(int(min(max(round(centre - window / 2.0), 0), length - window)))
    return starts


def block_quality_map(
    norm_blocks: Mapping[str, torch.Tensor],
    spec: EnsembleSpec,
    size: tuple[int, int] | None = None,
    block: int | None = None,
) -> torch.Tensor:
    """Combine per-member normalised block scores (N, hb, wb) into the ensemble block map.

    Returns (N, hb, wb), or with ``size=(H, W)`` the map expanded to pixels, (N, 1, H, W),
    each pixel carrying its block's score (nearest), ready to weight a pixel loss.
    """
    q = combine(norm_blocks, spec)
    if size is None:
        return q
    block = spec.block if block is None else block
    h, w = size
    if block_grid(h, w, block) != tuple(q.shape[-2:]):
        raise ValueError(f"block map of shape {tuple(q.shape[-2:])} does not tile {h}x{w} with block {block}")
    full = q.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1)
    return full[..., :h, :w].unsqueeze(1)
