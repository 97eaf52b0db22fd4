"""The method's losses as pure functions of tensors (docs/method.md §6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def expand_block_map(block_weights: torch.Tensor, height: int, width: int, block: int = 144) -> torch.Tensor:
    """A per-block map (N, hb, wb) -> per-pixel (N, 1, H, W), each pixel carrying its block's value.

    The grid must be ``ceil(H / block) x ceil(W / block)`` (partial edge blocks count), the
    convention of :func:`qt_train.iqa.mapping.block_quality_map`. A map already (N, 1, H, W)
    is returned as is.
    """
    if block_weights.dim() == 4:
        if block_weights.shape[1] != 1 or tuple(block_weights.shape[-2:]) != (height, width):
            raise ValueError(
                f"pixel weight map must be (N, 1, {height}, {width}), got {tuple(block_weights.shape)}"
            )
        return block_weights
    if block_weights.dim() != 3:
        raise ValueError(
            f"block weights must be (N, hb, wb) or (N, 1, H, W), got {tuple(block_weights.shape)}"
        )
    hb, wb = -(-height // block), -(-width // block)
    if tuple(block_weights.shape[-2:]) != (hb, wb):
        raise ValueError(
            f"block map {tuple(block_weights.shape[-2:])} does not tile {height}x{width} with block {block} "
            f"(expected {(hb, wb)})"
        )
    full = block_weights.repeat_interleave(block, dim=-2).repeat_interleave(block, dim=-1)
    return full[:, None, :height, :width]


def block_weighted_l1(
    pred: torch.Tensor, target: torch.Tensor, block_weights: torch.Tensor, block: int = 144
) -> torch.Tensor:
    """mean(w * |pred - target|): L1 to a PL where each pixel counts by its block's quality.

    Weights are broadcast over channels and not renormalised, so a PL of uniformly low quality
    pulls the student less than a good one (the reference's convention).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    w = expand_block_map(block_weights, pred.shape[-2], pred.shape[-1], block).to(pred.dtype)
    return (w * (pred - target).abs()).mean()


def preference_loss(
    r_top: torch.Tensor,
    r_k: torch.Tensor,
    r_best_pl: torch.Tensor,
    beta: float = 1.0,
    delta: float = 0.1,
    lam: float = 1.0,
    b_weight: float = 0.5,
) -> torch.Tensor:
    """Score-based preference loss (DPO-inspired, no reference policy), mean over the batch.

    A = -log sigma(beta (r_top - r_k - delta)): the top-level output must out-score level k by a
    margin; B = -log sigma(beta (r_top - r_best_pl)): and beat the best stored PL, whose reward is
    detached (the teacher side is a fixed target). L = lam (A + b_weight B). ``logsigmoid`` keeps
    large reward gaps finite.
    """
    a = -F.logsigmoid(beta * (r_top - r_k - delta))
    b = -F.logsigmoid(beta * (r_top - r_best_pl.detach()))
    return lam * (a + b_weight * b).mean()


def _crop(x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, ch: int, cw: int) -> torch.Tensor:
    return torch.stack(
        [
            x[i, :, int(t) : int(t) + ch, int(s) : int(s) + cw]
            for i, (t, s) in enumerate(zip(tops, lefts, strict=True))
        ]
    )


def cropped_consistency(
    student_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    generator: torch.Generator,
    frac: float = 0.5,
    aligned: bool = True,
    margin: int = 0,
) -> torch.Tensor:
    """L1 between crop(student(x)) and student(crop(x)) for a random frac x frac window per sample.

    Why: an IQA reward can be hacked by global tricks (colour casts, halos) that depend on the
    whole frame; a restoration that is a local function of the image gives the same result on a
    crop. ``student_fn`` is the student at the top level, e.g. ``lambda t: net(t, quality=7)``.

    Aligned crops (the same window on both sides) are the evident intent of the paper and our
    default. The reference code draws the two windows independently, comparing unrelated content;
    ``aligned=False`` reproduces that.

    ``margin`` px at each crop border are left out of the L1. Default 0: the network's receptive
    field is far larger than any small margin, so a margin would only hide the padding effect at
    the crop border — and that effect is exactly the seam the runtime's tiled inference shows, so
    penalising it is useful. Raise it to train only the interior.
    """
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must lie in (0, 1], got {frac}")
    n, _, h, w = x.shape
    ch, cw = max(1, round(frac * h)), max(1, round(frac * w))
    if margin < 0 or 2 * margin >= min(ch, cw):
        raise ValueError(f"margin {margin} leaves nothing of a {ch}x{cw} crop")

    def window() -> tuple[torch.Tensor, torch.Tensor]:
        tops = torch.randint(0, h - ch + 1, (n,), generator=generator)
        lefts = torch.randint(0, w - cw + 1, (n,), generator=generator)
        return tops, lefts

    win1 = window()
    win2 = win1 if aligned else window()
    r1 = _crop(student_fn(x), *win1, ch, cw)
    r2 = student_fn(_crop(x, *win2, ch, cw))
    if margin:
        r1 = r1[..., margin : ch - margin, margin : cw - margin]
        r2 = r2[..., margin : ch - margin, margin : cw - margin]
    return F.l1_loss(r1, r2)


def level_pair(generator: torch.Generator, choices: Sequence[int], top: int) -> tuple[int, int]:
    """(top, k): the preferred level and a lower level k drawn uniformly from ``choices``."""
    if not choices:
        raise ValueError("choices is empty")
    if any(c >= top for c in choices):
        raise ValueError(f"every choice must be below the top level {top}, got {tuple(choices)}")
    i = int(torch.randint(len(choices), (1,), generator=generator))
    return top, int(choices[i])
