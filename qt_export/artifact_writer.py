"""Write the artifact's metadata files: manifest.json (+ its ONNX mirror), gate_frames.npz,
report.json, compare.png.

Why this order in :func:`finalize`: mirroring the manifest into the ONNX ``metadata_props``
rewrites the model file, so it happens first and the sha256 of every file is taken afterwards
(the mirror never holds ``sha256``, which would be circular).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from qt_core.hashing import hash_files
from qt_core.pixels import to_uint8
from qt_runtime.manifest import (
    CalibrationInfo,
    GateInfo,
    InputInfo,
    Manifest,
    QualityInfo,
    write_manifest,
)


def quality_info(mode: str, level: float, levels: int) -> QualityInfo:
    lvl: float = int(level) if float(level).is_integer() else float(level)
    if mode == "input":
        return QualityInfo(mode="input", levels=levels, level=None, input_name="quality", default=lvl)
    return QualityInfo(mode="folded", levels=levels, level=lvl)


def gate_info(result: Any) -> GateInfo:
    """Manifest summary of a :class:`qt_export.gate.GateResult`."""
    return GateInfo(
        passed=result.passed, psnr_vs_fp32=round(result.psnr_vs_fp32, 3),
        score_drop=None if result.score_drop is None else round(result.score_drop, 5),
        bounds=dataclasses.asdict(result.bounds),
    )


def build_manifest(
    *, arch: str, task: str, fmt: str, target: str, files: list[str], precision: str,
    quality: QualityInfo, size: tuple[int, int] | None, multiple: int,
    calibration: CalibrationInfo | None = None, gate: GateInfo | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """A manifest with placeholder hashes (:func:`finalize` fills them in)."""
    return Manifest(
        arch=arch, task=task, format=fmt, target=target, files=tuple(files),
        sha256=dict.fromkeys(files, ""), precision=precision,
        input=InputInfo(size=tuple(size) if size else None, multiple=multiple),
        quality=quality, calibration=calibration, gate=gate,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), extra=dict(extra or {}),
    )


def finalize(folder: str | Path, manifest: Manifest) -> Manifest:
    """Mirror into ONNX files, hash every listed file, write manifest.json; returns what was written."""
    from qt_runtime.artifact import mirror_into_onnx

    folder = Path(folder)
    for name in manifest.files:
        if name.endswith(".onnx"):
            mirror_into_onnx(folder / name, manifest)
    final = replace(manifest, sha256=hash_files(folder, manifest.files))
    write_manifest(folder, final)
    return final


def write_gate_frames(folder: str | Path, gate_in: np.ndarray, reference: np.ndarray,
                      outputs: np.ndarray) -> str:
    """Write the gate's inputs, FP32 reference outputs and this artifact's per-frame PSNR as
    ``gate_frames.npz`` (``qt-run verify`` re-runs them on the device); returns the file name, which
    the manifest lists and hashes like every other file."""
    from qt_core.atomic import atomic_write_bytes
    from qt_runtime.verify import GATE_FRAMES, encode_gate_frames

    atomic_write_bytes(Path(folder) / GATE_FRAMES, encode_gate_frames(gate_in, reference, outputs))
    return GATE_FRAMES


def write_json(path: str | Path, data: Any) -> None:
    from qt_core.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_compare(path: str | Path, inputs: np.ndarray, fp32: np.ndarray, artifact: np.ndarray,
                  rows: int = 4) -> None:
    """PNG grid, one row per frame: input | FP32 | artifact (NCHW float in [0, 1])."""
    import cv2

    from qt_core.atomic import atomic_write_bytes

    def tile(a: np.ndarray) -> np.ndarray:
        return to_uint8(a.transpose(1, 2, 0))

    n = min(rows, len(inputs))
    gap = 4
    lines = []
    for i in range(n):
        parts = [tile(inputs[i]), tile(fp32[i]), tile(artifact[i])]
        sep = np.full((parts[0].shape[0], gap, 3), 255, np.uint8)
        lines.append(np.concatenate([parts[0], sep, parts[1], sep, parts[2]], axis=1))
        lines.append(np.full((gap, lines[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(lines[:-1], axis=0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())
