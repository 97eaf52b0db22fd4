"""Degradation engine: seeded, vectorised synthesizers for the five restoration tasks.

Each task has a frozen parameter-range dataclass and two synthesizers:
``synthetic`` (the clean, homogeneous paired-training distribution) and ``realistic`` (a shifted
distribution with non-homogeneous media, camera noise, blur, casts, vignetting and JPEG), both
with the signature ``fn(clean (N,H,W,3) float32, rng, severity | None, params) -> (lq, record)``.
Adding a task = one module + one line in ``SYNTHESIZERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import haze, lowlight, rain, snow, underwater
from .common import RealismParams, Record, as_batch, as_rng, check_severity, to_records
from .haze import HazeParams
from .lowlight import LowLightParams
from .rain import RainParams
from .snow import SnowParams
from .underwater import UnderwaterParams

TaskParams = HazeParams | RainParams | SnowParams | LowLightParams | UnderwaterParams
"""Any task's frozen parameter-range dataclass (each also carries the shared RealismParams fields)."""

SynthFn = Callable[[np.ndarray, np.random.Generator, float | None, Any], tuple[np.ndarray, Record]]


@dataclass(frozen=True)
class Synthesizer:
    """One task's entry: its parameter-range class and its two domain synthesizers."""

    params_cls: type
    synthetic: SynthFn
    realistic: SynthFn

    def fn(self, domain: str) -> SynthFn:
        if domain == "synthetic":
            return self.synthetic
        if domain == "realistic":
            return self.realistic
        raise ValueError(f"unknown domain {domain!r}; valid domains: {', '.join(DOMAINS)}")


SYNTHESIZERS: dict[str, Synthesizer] = {
    "dehaze": Synthesizer(HazeParams, haze.synthetic, haze.realistic),
    "derain": Synthesizer(RainParams, rain.synthetic, rain.realistic),
    "desnow": Synthesizer(SnowParams, snow.synthetic, snow.realistic),
    "lowlight": Synthesizer(LowLightParams, lowlight.synthetic, lowlight.realistic),
    "underwater": Synthesizer(UnderwaterParams, underwater.synthetic, underwater.realistic),
}

TASKS: tuple[str, ...] = tuple(SYNTHESIZERS)
DOMAINS: tuple[str, ...] = ("synthetic", "realistic")


def _entry(task: str) -> Synthesizer:
    try:
        return SYNTHESIZERS[task]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}") from None


def default_params(task: str) -> TaskParams:
    """The default parameter ranges of ``task`` (a frozen dataclass instance)."""
    return _entry(task).params_cls()


def degrade(
    task: str,
    domain: str,
    clean: np.ndarray,
    rng: np.random.Generator | int,
    severity: float | None = None,
    params: TaskParams | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Degrade clean RGB image(s) for ``task`` in ``domain``.

    clean: float (H,W,3) or (N,H,W,3) in [0,1].  rng: a Generator (advanced in place) or an int
    seed.  severity: None samples the task's main strength from ``params``; a value in [0,1] fixes
    it from mild to severe (other nuisances still come from rng).  params: the task's params
    dataclass (defaults if None).

    Returns (lq with the input's rank, float32 in [0,1]; one JSON-serialisable dict per image with
    the task, domain, severity and every sampled parameter).
    """
    entry = _entry(task)
    fn = entry.fn(domain)
    p = entry.params_cls() if params is None else params
    if not isinstance(p, entry.params_cls):
        raise TypeError(f"params for {task!r} must be {entry.params_cls.__name__}, got {type(p).__name__}")
    sev = check_severity(severity)
    gen = as_rng(rng)
    x, batched = as_batch(clean)
    lq, rec = fn(x, gen, sev, p)
    lq = np.clip(np.nan_to_num(lq, nan=0.0), 0.0, 1.0).astype(np.float32, copy=False)
    records = to_records(x.shape[0], rec, {"task": task, "domain": domain, "severity": sev})
    return (lq if batched else lq[0]), records


__all__ = [
    "DOMAINS",
    "SYNTHESIZERS",
    "TASKS",
    "HazeParams",
    "LowLightParams",
    "RainParams",
    "RealismParams",
    "SnowParams",
    "Synthesizer",
    "TaskParams",
    "UnderwaterParams",
    "default_params",
    "degrade",
]
