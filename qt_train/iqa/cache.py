"""Content-keyed LRU cache of per-image raw member scores.

Why: the memory bank and the calibration set re-score the same pseudo-labels and frames;
scoring an image the ensemble has already seen should be free. The key is a blake2b digest
of the image quantised to uint8 (plus its shape), so images that differ by less than one
8-bit step share an entry; the members round to 8 bits themselves (NIQE, PIQE), and scores
are a property of what a camera could store.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def image_key(img: torch.Tensor) -> bytes:
    """Digest of one (C, H, W) image in [0, 1], quantised to uint8."""
    import torch

    q = (img.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(q.shape)).encode())
    h.update(q.numpy().tobytes())
    return h.digest()


class ScoreCache:
    """LRU mapping image key -> {member name: raw score}; ``capacity`` 0 disables it."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._data: OrderedDict[bytes, dict[str, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> dict[str, float] | None:
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: bytes, raw: dict[str, float]) -> None:
        if self.capacity == 0:
            return
        self._data[key] = dict(raw)
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0
