"""The methods' objectives: the loss of one iteration per method, as named loss terms (tensors),
and ``METHODS``, the one table of what each method is (its objective, whether it scores PLs with
the IQA ensemble, keeps a bank, conditions the student). The training loop, ``qt-eval`` and the
benchmarks read the table; nothing else branches on a method's name.

- `supervised`: the labelled branch only (stage 1, and the "more training" control).
- `mean_teacher`: unconditioned student trained on every current teacher PL (plain L1).
- `reliable_bank`: Semi-UIR's bank: one PL per image, replaced only when a candidate
  out-scores both the stored PL and the student's own output; unconditioned.
- `qualiteacher`: every PL kept (best k per image in the bank), the student conditioned on
  each PL's quality level (the ensemble's rule, or the bank's quantiles with
  `method.level_quantiles`) with block-weighted L1, plus the preference and cropped
  consistency losses from their start iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from qt_train.method.agreement import view_agreement
from qt_train.method.augment import invert, multi_augment, strong_augment
from qt_train.method.bank import BankEntry, MemoryBank, reliable_accepts
from qt_train.method.levels import level_of, quantile_cuts
from qt_train.method.losses import block_weighted_l1, cropped_consistency, level_pair, preference_loss
from qt_train.schema import MethodConfig

Terms = dict[str, torch.Tensor]


@dataclass
class RealBatch:
    """Unlabelled images of one iteration: ids in the pool, the images, and which get a weak hflip."""

    ids: list[int]
    x: torch.Tensor  # canonical orientation
    flips: torch.Tensor  # (N,) bool

    def weak(self, t: torch.Tensor) -> torch.Tensor:
        """Apply this batch's weak augmentation (its own inverse) to images aligned with x."""
        return torch.where(self.flips.view(-1, 1, 1, 1), t.flip(-1), t)


@dataclass
class SemiStep:
    """What a semi-supervised objective sees in one iteration (``ensemble``/``bank`` None where
    the method uses none)."""

    student: Any
    teacher: Any
    ensemble: Any
    bank: MemoryBank | None
    batch: RealBatch
    method: MethodConfig
    gen: torch.Generator
    semi_it: int
    block: int


def labelled_terms(student: torch.nn.Module, lq: torch.Tensor, gt: torch.Tensor, quality: int | None,
                   weight: float) -> Terms:
    """L1 to ground truth. A conditioned student sees clean targets at the top level."""
    return {"sup": weight * F.l1_loss(student(lq, quality=quality), gt)}


@torch.no_grad()
def teacher_candidates(teacher: torch.nn.Module, x: torch.Tensor, views: tuple[str, ...]) -> torch.Tensor:
    """(V, N, 3, H, W) PL candidates: the unconditioned teacher on each view, mapped back."""
    return torch.stack([invert(name, teacher(xa, quality=None)) for name, xa in multi_augment(x, views)])


def _views(m: MethodConfig) -> tuple[str, ...]:
    return tuple(m.augments) if m.multi_augment else ("identity",)


def _strong(x: torch.Tensor, m: MethodConfig, gen: torch.Generator) -> torch.Tensor:
    return strong_augment(x, gen, n_ops=m.strong_ops, magnitude=m.strong_magnitude)


def mean_teacher_terms(s: SemiStep) -> Terms:
    student, teacher, batch, m, gen = s.student, s.teacher, s.batch, s.method, s.gen
    xw = batch.weak(batch.x)
    cands = teacher_candidates(teacher, xw, _views(m))  # every PL, trusted as it is
    v, n = cands.shape[:2]
    xs = _strong(xw, m, gen).repeat(v, 1, 1, 1)
    out = student(xs, quality=None)
    return {"pl": m.pl_weight * F.l1_loss(out, cands.reshape(v * n, *cands.shape[2:]))}


def _rank_scores(scores: Any) -> torch.Tensor:
    """The bank's ranking: the sum of normalised member scores (docs/method.md §3)."""
    return torch.stack(list(scores.norm.values())).sum(0)


def reliable_bank_terms(s: SemiStep) -> Terms:
    student, teacher, ensemble, bank, batch, m, gen = s.student, s.teacher, s.ensemble, s.bank, s.batch, s.method, s.gen
    xw = batch.weak(batch.x)
    cands = teacher_candidates(teacher, xw, _views(m))
    v, n = cands.shape[:2]
    flat = cands.reshape(v * n, *cands.shape[2:])
    rank = _rank_scores(ensemble.score(flat, use_cache=False)).view(v, n)
    best_view = rank.argmax(0)
    with torch.no_grad():
        own = _rank_scores(ensemble.score(student(xw, quality=None), use_cache=False))
    targets, inputs = [], []
    xs = _strong(xw, m, gen)
    for j, image_id in enumerate(batch.ids):
        key, flip = str(image_id), bool(batch.flips[j])
        cand, cand_score = cands[best_view[j], j], float(rank[best_view[j], j])
        stored = bank.best(key)
        if bool(reliable_accepts(None if stored is None else stored.score, cand_score, float(own[j]))):
            bank.update(key, [BankEntry(cand_score, 0, cand.flip(-1) if flip else cand, None)])
        stored = bank.best(key)
        if stored is not None:  # images without an accepted PL yet sit this iteration out
            inputs.append(xs[j])
            targets.append(stored.pl.flip(-1) if flip else stored.pl)
    if not inputs:
        return {"pl": torch.zeros((), requires_grad=True)}
    out = student(torch.stack(inputs), quality=None)
    return {"pl": m.pl_weight * F.l1_loss(out, torch.stack(targets))}


def _block_weights(ensemble, flat: torch.Tensor, combined: torch.Tensor, block: int) -> torch.Tensor:
    """(N, hb, wb) quality per block; a PL smaller than one block gets its whole-image score."""
    if block >= max(flat.shape[-2:]):
        return combined.view(-1, 1, 1)
    return ensemble.block_map(flat, block=block)


def store_candidates(s: SemiStep, xw: torch.Tensor) -> list[list[BankEntry]]:
    """QualiTeacher's bank update: the teacher's PL candidates of every view, scored once (by the
    ensemble: ranking score, quality, block map; or by the views' agreement: ranking score =
    quality, no block map), merged into the bank; returns each image's stored entries
    (canonical orientation), best first."""
    ensemble, bank, batch, m = s.ensemble, s.bank, s.batch, s.method
    cands = teacher_candidates(s.teacher, xw, _views(m))
    v, n = cands.shape[:2]
    flat = cands.reshape(v * n, *cands.shape[2:])
    if m.quality_source == "agreement":  # no IQA pass: quality = agreement, levels from the bank's quantiles
        quality = view_agreement(cands).reshape(-1)
        rank, level, weights = quality, torch.full_like(quality, m.top_level // 2, dtype=torch.long), None
    else:
        scores = ensemble.score(flat, use_cache=False)
        rank, level, quality = _rank_scores(scores), scores.level, scores.combined
        weights = _block_weights(ensemble, flat, scores.combined, s.block) if m.block_weighting else None
    # candidates are stored in canonical orientation (un-flip the weak hflip)
    canon = torch.where(batch.flips.repeat(v).view(-1, 1, 1, 1), flat.flip(-1), flat)
    entries: list[list[BankEntry]] = []
    for j, image_id in enumerate(batch.ids):
        cand = []
        for view in range(v):
            i = view * n + j
            bm = None
            if weights is not None:
                bm = weights[i].flip(-1) if bool(batch.flips[j]) else weights[i]
            cand.append(BankEntry(float(rank[i]), int(level[i]), canon[i], bm, float(quality[i])))
        entries.append(bank.update(str(image_id), cand))
    return entries


def qualiteacher_terms(s: SemiStep) -> Terms:
    student, ensemble, bank, batch, m, gen, semi_it, block = (
        s.student, s.ensemble, s.bank, s.batch, s.method, s.gen, s.semi_it, s.block)
    xw = batch.weak(batch.x)
    n = xw.shape[0]
    entries = store_candidates(s, xw)
    cuts = quantile_cuts(bank.qualities(), ensemble.spec.levels) if m.level_quantiles else None

    # The student sees a strongly augmented input once per stored PL, at that PL's level.
    xs = _strong(xw, m, gen)
    inputs, targets, levels, maps = [], [], [], []
    for j, es in enumerate(entries):
        for e in es:
            inputs.append(xs[j])
            targets.append(e.pl.flip(-1) if bool(batch.flips[j]) else e.pl)
            levels.append(e.level if cuts is None else int(level_of(e.quality, cuts)))
            if e.block_map is not None:
                maps.append(e.block_map.flip(-1) if bool(batch.flips[j]) else e.block_map)
    quality = torch.tensor(levels) if m.conditioning else None
    out = student(torch.stack(inputs), quality=quality)
    target = torch.stack(targets)
    if maps:
        loss_pl = block_weighted_l1(out, target, torch.stack(maps), block=block)
    else:
        loss_pl = F.l1_loss(out, target)
    terms: Terms = {"pl": m.pl_weight * loss_pl}

    if m.preference and semi_it >= m.preference_start:
        top, k = level_pair(gen, m.preference_levels, m.top_level)
        y = student(torch.cat([xw, xw]), quality=torch.tensor([top] * n + [k] * n))
        r = ensemble.reward(y)
        # max over each image's stored PLs of r(PL): each PL was scored once, when it was stored (its
        # quality travels in the bank and the checkpoint, so a resumed run sees the same values).
        r_best = torch.tensor([max(e.quality for e in es) for es in entries], dtype=r.dtype, device=r.device)
        r_k = r[n:].detach() if m.preference_detach_lower else r[n:]
        terms["pref"] = preference_loss(
            r[:n], r_k, r_best, beta=m.preference_beta, delta=m.preference_delta,
            lam=m.preference_weight, b_weight=m.preference_b_weight,
        )
        if m.anchor_weight:
            top_pl = [max(es, key=lambda e: e.quality).pl for es in entries]  # the PL r_best is
            best = torch.stack([p.flip(-1) if bool(batch.flips[j]) else p for j, p in enumerate(top_pl)]).to(y.device)
            terms["anchor"] = m.anchor_weight * F.l1_loss(y[:n], best)
    if m.consistency and semi_it >= m.consistency_start:
        top_q = m.top_level if m.conditioning else None
        terms["cons"] = m.consistency_weight * cropped_consistency(
            lambda t: student(t, quality=top_q), xw, gen, frac=m.crop_frac, aligned=m.aligned_crops
        )
    return terms


@dataclass(frozen=True)
class MethodEntry:
    """``terms``: the semi-supervised objective (None: the labelled branch alone); ``uses_iqa``:
    the loop builds the reward ensemble; ``bank_k``: PLs kept per image (None: no bank, 0:
    ``method.bank_size``); ``conditioned``: the student takes quality levels (with
    ``method.conditioning``), so evaluation runs it at the top level."""

    terms: Callable[[SemiStep], Terms] | None
    uses_iqa: bool
    bank_k: int | None
    conditioned: bool


METHODS: dict[str, MethodEntry] = {
    "supervised": MethodEntry(None, uses_iqa=False, bank_k=None, conditioned=False),
    "mean_teacher": MethodEntry(mean_teacher_terms, uses_iqa=False, bank_k=None, conditioned=False),
    "reliable_bank": MethodEntry(reliable_bank_terms, uses_iqa=True, bank_k=1, conditioned=False),
    "qualiteacher": MethodEntry(qualiteacher_terms, uses_iqa=True, bank_k=0, conditioned=True),
}


def conditioned(method: str, m: MethodConfig) -> bool:
    """Whether a run of ``method`` trains (and is evaluated) quality-conditioned."""
    return METHODS[method].conditioned and m.conditioning
