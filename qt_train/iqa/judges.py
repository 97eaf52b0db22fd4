"""Judges: no-reference IQA models that no student optimises and the project never fits.

A gain that only the reward ensemble sees is reward hacking; benchmarks therefore also report
these. Both are lower-is-better and calibrated outside this project:

- ``niqe_original``: NIQE with the published pristine model (``calibration/niqe_original.py``);
- ``brisque_live``: BRISQUE with an SVR trained on LIVE human opinion scores (``brisque_live.py``).

The judge ensemble is ``spec.default_judge_spec()`` (its members are built from
``ensemble.PROJECT_METRICS``); ``build_judges`` gives its members as per-image callables.
"""

from __future__ import annotations

from collections.abc import Callable

from .weights import bundled_assets_dir

ASSETS = bundled_assets_dir()


def build_judges(names: tuple[str, ...] | None = None) -> dict[str, Callable]:
    """name -> callable (1, 3, H, W) float tensor -> raw score, for the default judge's members."""
    from .ensemble import _run_member, build_metric
    from .spec import default_judge_spec

    members = {m.name: m for m in default_judge_spec().members}
    names = tuple(members) if names is None else names
    unknown = [n for n in names if n not in members]
    if unknown:
        raise ValueError(f"unknown judge(s) {', '.join(unknown)}; valid: {', '.join(members)}")
    metrics = {n: build_metric(members[n], "cpu") for n in names}
    return {n: (lambda x, m=m: float(_run_member(m, x.float().clamp(0, 1))[0])) for n, m in metrics.items()}
