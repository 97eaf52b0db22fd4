"""Preview grids of the degradation engine: one PNG per task x domain, to eyeball the synthesizers.

Rows are clean images; columns are clean | two random samples | severity 0, 0.5, 1.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from qt_core.atomic import atomic_write_bytes
from qt_core.pixels import to_uint8

from .degrade import DOMAINS, TASKS, degrade

_COLUMNS: tuple[tuple[str, float | None, int], ...] = (
    ("sample a", None, 0),
    ("sample b", None, 1),
    ("sev 0", 0.0, 2),
    ("sev 0.5", 0.5, 2),
    ("sev 1", 1.0, 2),
)
_LABEL_H = 22
_GAP = 4


def _to_u8_bgr(img: np.ndarray) -> np.ndarray:
    return to_uint8(img)[..., ::-1]


def _label(width: int, text: str) -> np.ndarray:
    bar = np.full((_LABEL_H, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, _LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def make_grid(clean: np.ndarray, task: str, domain: str, seed: int = 0) -> np.ndarray:
    """The preview grid as a uint8 BGR image (rows = images, columns = clean then degradations)."""
    batch = clean if clean.ndim == 4 else clean[None]
    n, h, w, _ = batch.shape
    columns = [("clean", batch)]
    for name, severity, offset in _COLUMNS:
        lq, _ = degrade(task, domain, batch, np.random.default_rng(seed * 1000 + offset), severity=severity)
        columns.append((name, lq))
    gap_v = np.full((h, _GAP, 3), 255, np.uint8)
    header = np.concatenate(
        [
            np.concatenate([_label(w, name), np.full((_LABEL_H, _GAP, 3), 255, np.uint8)], 1)
            for name, _ in columns
        ],
        1,
    )
    rows = [header]
    for i in range(n):
        rows.append(np.concatenate([np.concatenate([_to_u8_bgr(c[i]), gap_v], 1) for _, c in columns], 1))
        rows.append(np.full((_GAP, header.shape[1], 3), 255, np.uint8))
    return np.concatenate(rows, 0)


def _write_png_atomic(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"could not encode preview {path}")
    atomic_write_bytes(path, buf.tobytes())


def write_previews(clean: np.ndarray, out_dir: Path, seed: int = 0) -> list[Path]:
    """Write ``out_dir/{task}_{domain}.png`` for every task and domain; returns the paths.

    clean: float RGB (N,H,W,3) or (H,W,3) in [0,1]; a few (2-4) images of a few hundred px work best.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in TASKS:
        for domain in DOMAINS:
            path = out_dir / f"{task}_{domain}.png"
            _write_png_atomic(path, make_grid(np.asarray(clean, np.float32), task, domain, seed))
            paths.append(path)
    return paths
