"""bench/paired.py: the interval that decides whether a claim row's lead is a lead, and the winner rule;
bench/levels.py: the same rule deciding which quality level a conditioned student serves."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from levels import summary  # noqa: E402
from paired import bootstrap, pick_winner  # noqa: E402


def test_interval_brackets_the_mean_and_narrows_with_more_images():
    diff = np.random.default_rng(1).normal(0.3, 1.0, 32)
    low, high = bootstrap(diff)
    assert low < diff.mean() < high
    more_low, more_high = bootstrap(np.tile(diff, 16))  # the same spread over 16x the images
    assert (more_high - more_low) < (high - low) / 3
    assert bootstrap(diff) == (low, high)  # a fixed seed: a table reproduces


def test_a_constant_difference_is_certain():
    assert bootstrap(np.full(10, 0.5)) == pytest.approx((0.5, 0.5))


def test_a_lead_within_the_noise_includes_zero():
    """+0.3 dB on 32 images with a 1.5 dB per-image spread (the claim's dehaze rows) is not a lead."""
    rng = np.random.default_rng(7)
    diff = rng.normal(0.0, 1.5, 32)
    diff += 0.3 - diff.mean()
    low, high = bootstrap(diff)
    assert low < 0 < high


def test_the_control_ships_unless_a_lead_is_beyond_the_noise():
    rng = np.random.default_rng(3)
    control = rng.normal(18.0, 2.0, 64)
    noisy = control + rng.normal(0.05, 1.0, 64)  # a better mean, inside the noise
    clear = control + rng.normal(0.6, 0.3, 64)  # better on nearly every image
    assert pick_winner({"supervised": control, "qt": noisy}, "supervised")[0] == "supervised"
    winner, why = pick_winner({"supervised": control, "qt": clear, "mt": noisy}, "supervised")
    assert winner == "qt" and "leads the control" in why and "noise" not in why
    assert pick_winner({"supervised": control + 1, "qt": control}, "supervised") == ("supervised", "best mean")


def test_the_top_level_is_served_unless_a_lower_one_clearly_restores_better():
    rng = np.random.default_rng(5)
    base = rng.normal(18.0, 2.0, 64)
    ordered = [base + 0.1 * k + rng.normal(0, 0.05, 64) for k in range(8)]  # fidelity rises with the level
    s = summary(ordered)
    assert s["serve"] == 7 and s["rho"] == pytest.approx(1.0) and s["top_lead"] > 0
    assert s["means"] == pytest.approx([float(np.mean(x)) for x in ordered])
    lower_wins = [*ordered[:2], base + 2.0, *ordered[3:]]  # level 2 better on every image
    s = summary(lower_wins)
    assert s["serve"] == 2 and s["top_lead"] < 0 and "2 leads the top level" in s["why"]
    noisy = [*ordered[:2], ordered[7] + rng.normal(0.05, 1.0, 64), *ordered[3:]]  # a lead inside the noise
    assert summary(noisy)["serve"] == 7
