"""The consistency gate: an artifact ships only if, through the runtime's own backend, it stays
close to the FP32 PyTorch model on held-out frames.

Why the runtime's backend (not ONNX Runtime/OpenVINO called from here): the gate must test what
the device will run — the same loader, hash checks, pre-/post-processing and execution options.
Bounds: the mean PSNR against the FP32 output (catches broken ranges, clipped activations), the
PSNR of *every* frame (a mean hides one channel-swapped, shifted or flipped frame among eight),
finite outputs only (a NaN frame once scored 100 dB), and the relative drop of the IQA ensemble
score (catches a visible quality loss PSNR can underrate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


class GateFailed(ValueError):
    """The artifact broke a gate bound; nothing was written to the output folder."""


@dataclass(frozen=True)
class GateBounds:
    """``min_psnr``: mean over frames; ``min_frame_psnr``: every frame. INT8 exports that pass
    measure 39-49 dB mean with worst frames of 34 dB and more (docs/results.md); one broken frame
    measured 12.7-18 dB."""

    min_psnr: float = 38.0
    min_frame_psnr: float = 30.0
    max_score_drop: float = 0.02


@dataclass(frozen=True)
class GateResult:
    """PSNR is the mean over frames of PSNR(artifact, fp32); ``score_drop`` is
    (score_fp32 - score_artifact) / score_fp32 of the mean ensemble scores (negative: better)."""

    passed: bool
    psnr_vs_fp32: float
    psnr_min: float
    score_fp32: float | None
    score_artifact: float | None
    score_drop: float | None
    max_abs_diff: float
    frames: int
    bounds: GateBounds
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d


def run_backend(artifact_dir: str | Path, frames: np.ndarray, quality: float | None = None,
                backend: str | None = None) -> np.ndarray:
    """Outputs (N, 3, H, W) of the artifact through ``qt_runtime``, one frame at a time, fitted as
    ``qt-run`` fits them (``qt_runtime.verify.run_frames``: what ``qt-run verify`` re-runs on the device)."""
    import qt_runtime
    from qt_runtime.verify import run_frames

    be = qt_runtime.open_backend(qt_runtime.load_artifact(artifact_dir), backend=backend)
    try:
        return run_frames(be, frames, quality)
    finally:
        be.close()


def evaluate(
    reference: np.ndarray, artifact: np.ndarray, bounds: GateBounds,
    scorer: Callable[[np.ndarray], np.ndarray] | None,
) -> GateResult:
    """Compare outputs; ``scorer`` maps (N, 3, H, W) in [0, 1] to per-image ensemble scores. The
    PSNR bounds are ``qt_runtime.verify.check_parity``, the check ``qt-run verify`` repeats on the device."""
    from qt_runtime.verify import check_parity

    parity = check_parity(reference, artifact, bounds.min_psnr, bounds.min_frame_psnr)
    psnrs, bad, reasons = parity.psnrs, parity.non_finite, list(parity.reasons)
    mean_psnr = float(psnrs.mean())
    s_ref = s_art = drop = None
    if scorer is not None and not bad:
        s_ref = float(np.mean(scorer(reference)))
        s_art = float(np.mean(scorer(artifact)))
        drop = (s_ref - s_art) / max(abs(s_ref), 1e-6)
        if drop > bounds.max_score_drop:
            reasons.append(f"IQA score drop {100 * drop:.2f}% > {100 * bounds.max_score_drop:g}%")
    return GateResult(
        passed=not reasons, psnr_vs_fp32=mean_psnr, psnr_min=float(psnrs.min()), score_fp32=s_ref,
        score_artifact=s_art, score_drop=drop, max_abs_diff=float(np.nan_to_num(np.abs(artifact - reference), nan=np.inf).max()),
        frames=len(reference), bounds=bounds, reasons=tuple(reasons),
    )


def ensemble_scorer(spec: dict | None = None, min_side: int = 96) -> Callable[[np.ndarray], np.ndarray]:
    """Per-image scores of the run's IQA ensemble (``spec`` as a dict; None: the default);
    images smaller than NIQE's 96 px are upscaled first."""
    import torch
    import torch.nn.functional as F

    from qt_train.iqa import Ensemble, spec_from_dict

    ens = Ensemble(None if spec is None else spec_from_dict(spec), device="cpu")

    def score(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).clamp(0, 1)
        s = min_side / min(x.shape[-2:])
        if s > 1:
            x = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False).clamp(0, 1)
        return ens.score(x, use_cache=False).combined.cpu().numpy()

    return score
