"""Statistics the benchmarks share: a paired bootstrap interval and the rule that picks a winner.

Two models restore the same images, so their per-image differences, not their means, say whether
a lead would survive another image set.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 10_000


def bootstrap(diff: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``diff`` over resampled images (fixed seed: tables reproduce)."""
    diff = np.asarray(diff, np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (RESAMPLES, len(diff)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def pick_winner(per_image: dict[str, np.ndarray], control: str) -> tuple[str, str]:
    """The method that ships, and why. The control is the default; another method replaces it only
    when it has the best mean *and* its paired 95% interval against the control lies above 0 — a
    lead within the noise of the validation images is not a reason to ship more machinery."""
    means = {name: float(np.mean(v)) for name, v in per_image.items()}
    best = max(means, key=means.get)
    if best == control or control not in per_image:
        return best, "best mean"
    low, high = bootstrap(per_image[best] - per_image[control])
    lead = f"{best} leads the control by {means[best] - means[control]:+.2f} dB [{low:+.2f}, {high:+.2f}]"
    return (best, lead) if low > 0 else (control, lead + ": within the noise")
