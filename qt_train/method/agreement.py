"""PL quality from the teacher's agreement with itself across views (no IQA model, no ground truth).

Why: the IQA members order the teacher's PL candidates barely better than chance, and within an
image the ensemble's preferred view is anti-correlated with its true PSNR on haze and snow
(docs/results.md, "Is the quality signal able to teach?"). Where the teacher is unsure, its
restorations of the flipped and rotated views of the same image disagree; the distance of a
candidate from the views' consensus is therefore an estimate of its error that needs nothing but
the candidates themselves, and — being no model of image appearance — gives the student no
texture to game. Pure functions on the (V, N, C, H, W) candidates of ``teacher_candidates``.
"""

from __future__ import annotations

import torch


def consensus(cands: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) per-pixel median over the V views (robust to one view that goes wrong)."""
    if cands.shape[0] < 2:
        raise ValueError("view agreement needs at least 2 views (method.multi_augment: true)")
    v = cands.shape[0]
    ordered = cands.sort(dim=0).values
    return ordered[v // 2] if v % 2 else 0.5 * (ordered[v // 2 - 1] + ordered[v // 2])


def view_agreement(cands: torch.Tensor) -> torch.Tensor:
    """(V, N) quality of each candidate: minus its mean absolute distance to the consensus, so
    higher = better, 0 = every view agrees; comparable across images (absolute pixel units)."""
    centre = consensus(cands)
    return -(cands - centre.unsqueeze(0)).abs().flatten(2).mean(2)
