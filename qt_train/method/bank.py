"""Pseudo-label memory bank: the best k PLs per real image across iterations (docs/method.md §3).

Ranking: by ``score``, the caller's summed member scores of the PL (the reference sums the
members' normalised scores). Ties keep what is already stored (first come, first kept), so
equal candidates do not churn the bank.

Storage: PLs are stored as uint8 by default. Why: the bank holds k full images per real image
for the whole run (1000 frames at 640x360 and k = 3 is 2 GB in uint8, 4 GB in fp16, 8 GB in
fp32); the PLs are targets for 8-bit imagery, and rounding to 1/255 (error <= 0.002) is far
below the L1 losses they drive. ``pl_dtype="float16"`` or ``"float32"`` keep more precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

PlDtype = Literal["uint8", "float16", "float32"]
_STATE_VERSION = 2  # 2: entries carry ``quality``


@dataclass(frozen=True)
class BankEntry:
    """One stored PL: its ranking score, its quality level when stored, the image (C, H, W), its
    block map (or None) and its ensemble quality in [0, 1] (levels from the bank's quantiles)."""

    score: float
    level: int
    pl: torch.Tensor
    block_map: torch.Tensor | None = None
    quality: float = math.nan


def bank_update(entries: Sequence[BankEntry], candidates: Iterable[BankEntry], k: int = 3) -> list[BankEntry]:
    """The best ``k`` of stored entries plus candidates, best first; stored entries win ties.

    Pure: inputs are not modified. A NaN score ranks below everything (a failed IQA member must
    not evict a good PL).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pool = list(entries) + list(candidates)

    def key(item: tuple[int, BankEntry]) -> tuple[float, int]:
        order, e = item
        s = float(e.score)
        return (math.inf if math.isnan(s) else -s, order)

    ranked = sorted(enumerate(pool), key=key)
    return [e for _, e in ranked[:k]]


def reliable_accepts(
    stored_score: torch.Tensor | float | None,
    candidate_score: torch.Tensor | float,
    student_score: torch.Tensor | float,
) -> torch.Tensor:
    """Semi-UIR's reliable-bank rule, vectorised: replace the stored PL only where the candidate's
    score beats both the stored PL's and the student's own output's.

    ``stored_score`` None (nothing stored yet) counts as -inf, so the candidate then only has to
    beat the student. Returns a bool tensor of the broadcast shape.
    """
    cand = torch.as_tensor(candidate_score, dtype=torch.float64)
    stud = torch.as_tensor(student_score, dtype=torch.float64)
    if stored_score is None:
        stored = torch.full_like(cand, -math.inf)
    else:
        stored = torch.as_tensor(stored_score, dtype=torch.float64)
    return (cand > stored) & (cand > stud)


def reliable_update(stored: BankEntry | None, candidate: BankEntry, student_score: float) -> BankEntry | None:
    """The entry a reliable bank holds after seeing ``candidate`` (k = 1 bank, Semi-UIR style)."""
    accept = bool(reliable_accepts(None if stored is None else stored.score, candidate.score, student_score))
    return candidate if accept else stored


def _encode(pl: torch.Tensor, dtype: PlDtype) -> torch.Tensor:
    pl = pl.detach().to("cpu")
    if dtype == "uint8":
        return (pl.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return pl.to(torch.float16 if dtype == "float16" else torch.float32).clone()


def _decode(pl: torch.Tensor) -> torch.Tensor:
    if pl.dtype == torch.uint8:
        return pl.float() / 255.0
    return pl.float()


class MemoryBank:
    """Image id -> best ``k`` entries, PLs stored on the CPU in ``pl_dtype``.

    ``update`` takes float PLs in [0, 1] (any device) and returns the stored entries decoded to
    float32; ``state_dict``/``load_state_dict`` round-trip exactly (stored tensors as they are).
    """

    def __init__(self, k: int = 3, pl_dtype: PlDtype = "uint8") -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if pl_dtype not in ("uint8", "float16", "float32"):
            raise ValueError(f"pl_dtype must be uint8, float16 or float32, got {pl_dtype!r}")
        self.k = k
        self.pl_dtype: PlDtype = pl_dtype
        self._store: dict[str, list[BankEntry]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._store

    def ids(self) -> list[str]:
        return list(self._store)

    def _stored(self, e: BankEntry) -> BankEntry:
        bm = None if e.block_map is None else e.block_map.detach().to("cpu").float().clone()
        return BankEntry(float(e.score), int(e.level), _encode(e.pl, self.pl_dtype), bm, float(e.quality))

    def update(self, image_id: str, candidates: Iterable[BankEntry]) -> list[BankEntry]:
        """Merge candidates into the image's entries; returns its entries (decoded), best first."""
        stored = [self._stored(c) for c in candidates]
        self._store[image_id] = bank_update(self._store.get(image_id, []), stored, self.k)
        return self.get(image_id)

    def get(self, image_id: str) -> list[BankEntry]:
        """The image's entries with PLs as float32 in [0, 1], best first; [] if unseen."""
        return [replace(e, pl=_decode(e.pl)) for e in self._store.get(image_id, [])]

    def qualities(self) -> torch.Tensor:
        """(M,) float64 ensemble quality of every stored PL (NaN where unknown)."""
        return torch.tensor([e.quality for es in self._store.values() for e in es], dtype=torch.float64)

    def best(self, image_id: str) -> BankEntry | None:
        entries = self.get(image_id)
        return entries[0] if entries else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "k": self.k,
            "pl_dtype": self.pl_dtype,
            "entries": {
                image_id: [
                    {"score": e.score, "level": e.level, "pl": e.pl, "block_map": e.block_map, "quality": e.quality}
                    for e in entries
                ]
                for image_id, entries in self._store.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with ``state``; k and dtype must match this bank's."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"memory bank state version {state.get('version')!r}, expected {_STATE_VERSION}: the "
                             "checkpoint predates this bank; start a new run from it with train.init")
        if state["k"] != self.k or state["pl_dtype"] != self.pl_dtype:
            raise ValueError(
                f"memory bank state has k={state['k']}, pl_dtype={state['pl_dtype']}; "
                f"this bank has k={self.k}, pl_dtype={self.pl_dtype}"
            )
        self._store = {
            str(image_id): [
                BankEntry(float(d["score"]), int(d["level"]), d["pl"], d["block_map"], float(d["quality"]))
                for d in entries
            ]
            for image_id, entries in state["entries"].items()
        }
