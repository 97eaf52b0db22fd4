"""Evaluation of a trained student: PSNR/SSIM on pairs, IQA scores on real images, the
per-level curve, and the paper's extrapolation check (does the top level beat the best PL?).

Pure functions over (N,3,H,W) tensors and a model, plus the one checkpoint -> student path
(:func:`load_student`, :func:`heldout_sets`), so qt-eval and the benchmarks measure alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qt_core.pixels import to_uint8

Model = Callable[..., torch.Tensor]

#: qt-eval's defaults (and the benchmarks'): images per set and their centre-crop side in px.
EVAL_LIMIT = 32
EVAL_SIZE = 256


@dataclass(frozen=True)
class Student:
    """A checkpoint's student ready to evaluate, and the level it is evaluated at."""

    model: torch.nn.Module  # EMA weights (else model weights), eval mode
    cfg: Any  # the run's RunConfig
    arch: str
    conditioned: bool  # the run's method trains a quality-conditioned student
    quality: float | None  # --quality, else the run's top level when conditioned, else None


def load_student(path: str | Path, config: str | None = None, quality: float | None = None) -> Student:
    """The student of a qt-train checkpoint with the run config it carries (``config``: a config file
    for checkpoints that carry none)."""
    from qt_core.config import build
    from qt_train.checkpoint import load_checkpoint, model_from_state
    from qt_train.method import objectives
    from qt_train.schema import RunConfig, load_run_config

    state = load_checkpoint(path)
    if "config" in state:
        cfg = build(RunConfig, state["config"], source=f"{path} (config)")
    elif config:
        cfg = load_run_config(config)
    else:
        raise ValueError(f"{path} carries no config — pass --config configs/TASK.yaml")
    model = model_from_state(state, str(path), arch=cfg.model.arch, arch_config=cfg.model.options)
    conditioned = objectives.conditioned(cfg.train.method, cfg.method)
    q = quality if quality is not None else (cfg.method.top_level if conditioned else None)
    return Student(model, cfg, state.get("arch", cfg.model.arch), conditioned, q)


def heldout_sets(cfg: Any, n: int, size: int,
                 domains: tuple[str, ...] = ("synthetic", "realistic")) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{domain: (lq, gt)}``: held-out pairs synthesised from the run's config, from clean images
    no training or fit used."""
    from qt_train.data.streams import held_out_pairs
    from qt_train.schema import degradation_params

    params = degradation_params(cfg)
    return {d: (h.lq, h.gt) for d in domains for h in [held_out_pairs(cfg, params, d, n=n, size=size)]}


@torch.no_grad()
def run_model(model: torch.nn.Module, x: torch.Tensor, quality: float | None, chunk: int = 8) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + chunk], quality=quality) for i in range(0, len(x), chunk)])


def per_image_metrics(out: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR / SSIM of every image against ``gt``, on RGB and on the luma channel Y (``*_y``): (N,) each.
    Paired comparisons between models need these, not their means."""
    from qt_train.metrics import psnr, rgb_to_y, ssim

    oy, gy = rgb_to_y(out), rgb_to_y(gt)
    return {"psnr": psnr(out, gt), "ssim": ssim(out, gt), "psnr_y": psnr(oy, gy), "ssim_y": ssim(oy, gy)}


def paired_metrics(out: torch.Tensor, gt: torch.Tensor, lq: torch.Tensor | None = None,
                   per_image: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Mean PSNR / SSIM against ``gt`` on RGB and on the luma channel Y (``*_y``), and of ``lq``.
    ``per_image``: ``per_image_metrics(out, gt)`` when the caller already has it (not computed twice)."""
    def means(per: dict[str, torch.Tensor], prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": float(v.mean()) for k, v in per.items()}

    result = {**means(per_image if per_image is not None else per_image_metrics(out, gt), ""), "n": len(out)}
    if lq is not None:
        result.update(means(per_image_metrics(lq, gt), "input_"))
    return result


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when one side is constant."""
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return float(rho)


#: Scores each image of a batch, higher = better: an IQA ensemble's combined score, or PSNR
#: against ground truth (:func:`ensemble_scorer`, :func:`psnr_scorer`).
Scorer = Callable[[torch.Tensor], torch.Tensor]


def ensemble_scorer(ensemble: Any) -> Scorer:
    return lambda x: ensemble.score(x, use_cache=False).combined


def psnr_scorer(gt: torch.Tensor) -> Scorer:
    """Ground truth as the scorer: the per-level curve and the extrapolation check by fidelity,
    which no IQA model's taste can bend."""
    from qt_train.metrics import psnr

    return lambda x: psnr(x, gt)


@dataclass(frozen=True)
class LevelCurve:
    levels: list[float]
    scores: list[float]  # mean score of the outputs at each level
    rho: float  # Spearman between level and mean score


@torch.no_grad()
def level_curve(model: torch.nn.Module, x: torch.Tensor, score: Scorer, levels: list[float] | None = None) -> LevelCurve:
    """Run the student at every quality level (default: all of the model's levels); a quality-graded
    student scores higher at higher levels."""
    levels = levels if levels is not None else [float(k) for k in range(model.quality_embed.levels)]
    scores = [float(score(run_model(model, x, q)).mean()) for q in levels]
    return LevelCurve(levels, scores, spearman(np.array(levels), np.array(scores)))


@torch.no_grad()
def extrapolation(model: torch.nn.Module, x: torch.Tensor, score: Scorer, top: int,
                  views: tuple[str, ...] = ("identity", "hflip", "vflip", "rot90")) -> dict[str, float]:
    """Fraction of images where the student at the top level (the run's ``method.top_level``)
    out-scores the best pseudo-label.

    The PLs are what the (EMA) teacher would produce now: the unconditioned model on each view.
    """
    from qt_train.method.augment import invert, multi_augment

    model.eval()
    top_scores = score(run_model(model, x, top))
    pls = [invert(name, run_model(model, xa, None)) for name, xa in multi_augment(x, views)]
    pl_scores = torch.stack([score(p) for p in pls]).amax(0)
    return {
        "fraction_top_beats_best_pl": float((top_scores > pl_scores).float().mean()),
        "mean_top_score": float(top_scores.mean()),
        "mean_best_pl_score": float(pl_scores.mean()),
    }


def before_after_grid(lq: torch.Tensor, out: torch.Tensor, gt: torch.Tensor | None = None, n: int = 6) -> np.ndarray:
    """uint8 RGB grid: one row per image, columns input | output (| ground truth)."""
    cols = [lq[:n], out[:n]] + ([gt[:n]] if gt is not None else [])
    rows = [torch.cat([c[i] for c in cols], dim=2) for i in range(min(n, len(lq)))]
    grid = torch.cat(rows, dim=1).clamp(0, 1)
    return to_uint8(grid.permute(1, 2, 0).numpy())


def plot_level_curve(curve: LevelCurve, path: Any, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(curve.levels, curve.scores, marker="o")
    ax.set_xlabel("quality level given to the student")
    ax.set_ylabel("score of the output")
    ax.set_title(f"{title} (Spearman ρ = {curve.rho:.2f})".strip())
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
