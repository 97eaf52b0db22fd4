"""Where each iteration's images come from.

Every batch is a pure function of (seed, iteration, rank): no sampler or loader state to
checkpoint, so `--resume` continues bit-identically and DDP ranks draw disjoint data.

- Labelled pairs: synthesised on the fly (clean crops from the training split + the task's
  `synthetic` degradation), or read from a user's paired folder.
- Unlabelled "real" images: a fixed pool, because the memory bank keeps pseudo-labels per
  image id. Either the user's folder/videos (one fixed crop per item) or `realistic`-domain
  images synthesised once from training-split clean images (their ground truth is never used).
- Held-out pairs for evaluation come from clean images no training or fit has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qt_core.pixels import to_uint8
from qt_train.schema import RunConfig


def nchw(batch: np.ndarray) -> torch.Tensor:
    """(N,H,W,3) float32 numpy -> (N,3,H,W) contiguous tensor."""
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


def _rng(seed: int, it: int, rank: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, it, rank, stream])


class LabelledStream:
    """Labelled (degraded, clean) batches for the supervised branch.

    Clean images: a pool of `data.n_train` crops of `data.size` px, made once (uint8, to keep it
    small); each batch takes random `data.patch` crops with flips and degrades them on the fly,
    so pairs never repeat exactly while the clean content stays a fixed, reproducible set.
    """

    def __init__(self, cfg: RunConfig, params: Any) -> None:
        self.cfg, self.params = cfg, params
        self.folder = None
        self.pool: np.ndarray | None = None
        d = cfg.data
        if d.paired is not None:
            from pathlib import Path

            from qt_train.data.datasets import PairedFolder

            root = Path(d.paired)
            self.folder = PairedFolder(root / "lq", root / "gt", patch=d.patch, augment=True, seed=cfg.seed)
        else:
            from qt_train.data.clean import sample_clean

            rng = np.random.default_rng([cfg.seed, 0xC1EA])
            clean = sample_clean(d.clean, d.n_train, max(d.size, d.patch), rng, folder=d.clean_folder, split="train")
            self.pool = to_uint8(clean)

    def batch(self, it: int, rank: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = _rng(self.cfg.seed, it, rank, 0)
        if self.folder is not None:
            self.folder.set_epoch(it)
            idx = rng.choice(len(self.folder), size=n, replace=len(self.folder) < n)
            items = [self.folder[int(i)] for i in idx]
            return torch.stack([i["lq"] for i in items]), torch.stack([i["gt"] for i in items])
        from qt_train.data.degrade import degrade

        p = self.cfg.data.patch
        idx = rng.integers(0, len(self.pool), size=n)
        size = self.pool.shape[1]
        tops, lefts = rng.integers(0, size - p + 1, size=n), rng.integers(0, size - p + 1, size=n)
        gt = np.stack([self.pool[i, y : y + p, x : x + p] for i, y, x in zip(idx, tops, lefts, strict=True)])
        flip = rng.random(n) < 0.5
        gt[flip] = gt[flip, :, ::-1]
        gt = gt.astype(np.float32) / 255.0
        lq, _ = degrade(self.cfg.task, "synthetic", gt, rng, params=self.params)
        return nchw(lq), nchw(gt)


class RealPool:
    """A fixed pool of unlabelled real images, addressed by id (the memory bank's key)."""

    def __init__(self, cfg: RunConfig, params: Any) -> None:
        d = cfg.data
        self.cfg = cfg
        self.folder = None
        self.images: torch.Tensor | None = None
        if d.real is not None:
            from qt_train.data.datasets import UnpairedFolder

            # augment=False and epoch 0 forever: one fixed crop per item, so a stored PL stays aligned.
            self.folder = UnpairedFolder(d.real, patch=d.patch, augment=False, seed=cfg.seed)
            self.size = len(self.folder)
        else:
            from qt_train.data.clean import sample_clean
            from qt_train.data.degrade import degrade

            rng = np.random.default_rng([cfg.seed, 0x5EA1])
            gt = sample_clean(d.clean, cfg.train.n_real, d.patch, rng, folder=d.clean_folder, split="train")
            lq, _ = degrade(cfg.task, "realistic", gt, rng, params=params)
            self.images = nchw(lq)
            self.size = cfg.train.n_real

    def get(self, ids: list[int]) -> torch.Tensor:
        if self.images is not None:
            return self.images[ids]
        return torch.stack([self.folder[i]["img"] for i in ids])

    def draw(self, it: int, rank: int, world: int, n: int) -> tuple[list[int], torch.Tensor]:
        """Ids for this rank (id % world == rank, so DDP ranks never share a bank entry) + a weak hflip."""
        own = np.arange(rank, self.size, world)
        rng = _rng(self.cfg.seed, it, rank, 1)
        ids = rng.choice(own, size=min(n, len(own)), replace=False).tolist()
        flips = torch.from_numpy(rng.random(len(ids)) < 0.5)
        return ids, flips


@dataclass(frozen=True)
class HeldOut:
    """Held-out pairs (both domains) for PSNR/SSIM, from clean images nothing was fitted on."""

    lq: torch.Tensor
    gt: torch.Tensor
    domain: str


def validation_pairs(task: str, n: int, size: int, params: Any = None) -> HeldOut:
    """Pairs for *choosing* settings (methods, IQA members): `realistic` domain, cut from photos that
    no run trains on and no evaluation reports (:mod:`qt_train.data.unseen`). Crops of the training
    photos were used before; they favour the run that trained on those photos longest."""
    from qt_train.data.unseen import unseen_pairs

    lq, gt = unseen_pairs(task, "validation", n, size, params=params)
    return HeldOut(lq, gt, "realistic")


def held_out_pairs(cfg: RunConfig, params: Any, domain: str, n: int | None = None, size: int | None = None) -> HeldOut:
    from qt_train.data.clean import sample_clean
    from qt_train.data.degrade import degrade

    d = cfg.data
    rng = np.random.default_rng([cfg.seed, 0xE7A1, 0 if domain == "synthetic" else 1])
    gt = sample_clean(d.clean, n or d.n_val, size or d.size, rng, folder=d.clean_folder, split="holdout")
    lq, _ = degrade(cfg.task, domain, gt, rng, params=params)
    return HeldOut(nchw(lq), nchw(gt), domain)
