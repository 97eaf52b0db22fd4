"""Judges: no-reference IQA models that no student optimises and the project never fits.

A gain that only the reward ensemble sees is reward hacking; benchmarks therefore also report
these. Both are lower-is-better and calibrated outside this project:

- ``niqe_original``: NIQE with the published pristine model (``calibration/niqe_original.py``);
- ``brisque_live``: BRISQUE with an SVR trained on LIVE human opinion scores (``brisque_live.py``).

``JUDGES`` is the one table: name -> builder of a callable (1, 3, H, W) float tensor -> float.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def _niqe_original() -> Callable:
    import pyiqa

    from .weights import no_network

    with no_network("judge niqe_original"), contextlib.redirect_stdout(io.StringIO()):
        metric = pyiqa.create_metric("niqe", device="cpu",
                                     pretrained_model_path=str(ASSETS / "niqe_original.mat"))
    return lambda x: float(metric(x.float().clamp(0, 1)))


def _brisque_live() -> Callable:
    from .brisque_live import BrisqueLive

    metric = BrisqueLive()
    return lambda x: float(metric(x)[0])


JUDGES: dict[str, Callable[[], Callable]] = {
    "niqe_original": _niqe_original,
    "brisque_live": _brisque_live,
}


def build_judges(names: tuple[str, ...] = tuple(JUDGES)) -> dict[str, Callable]:
    unknown = [n for n in names if n not in JUDGES]
    if unknown:
        raise ValueError(f"unknown judge(s) {', '.join(unknown)}; valid: {', '.join(JUDGES)}")
    return {n: JUDGES[n]() for n in names}
