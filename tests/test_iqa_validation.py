"""The default IQA ensemble ranks held-out synthetic severities; the reward keeps a gradient.

Ranking criterion: for each task, held-out clean 256 px crops (photos chelsea / grace_hopper and
dead-leaves images from a stream no fit drew from) are degraded in the ``synthetic`` domain at
severities 0, .25, .5, .75, 1 with the same nuisance draws per image. Per image, Spearman rho
between quality order (-severity) and the ensemble's combined score is computed; the rho
*averaged over images* must be >= 0.8 for every task. (About 1 s per task on 2 cores: not slow.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from calibration.rank_fit import EVAL_SEVERITIES, held_out_clean, ladder_spearman, severity_ladder
from qt_train.data.degrade import TASKS
from qt_train.iqa import EnsembleSpec, Member, default_spec, normalise

N_IMAGES = 4
SIZE = 256


def _nchw(x: np.ndarray) -> torch.Tensor:
    flat = x.reshape(-1, *x.shape[-3:])
    return torch.from_numpy(np.ascontiguousarray(flat.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def ens():
    from qt_train.iqa import Ensemble

    return Ensemble(device="cpu", cache_size=0)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return held_out_clean(N_IMAGES, SIZE)


@pytest.mark.parametrize("task", TASKS)
def test_ensemble_ranks_synthetic_severities(ens, clean, task):
    lad = severity_ladder(f"{task}/synthetic", clean, seed=11)
    combined = ens.score(_nchw(lad), use_cache=False).combined.reshape(N_IMAGES, len(EVAL_SEVERITIES))
    rho = ladder_spearman(combined.numpy())
    assert rho.mean() >= 0.8, (task, rho.round(2).tolist(), combined.numpy().round(3).tolist())


def test_ladder_spearman():
    sev = (0.0, 0.5, 1.0)
    rho = ladder_spearman(np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), sev)
    np.testing.assert_allclose(rho, [1.0, -1.0, 0.0])


def test_default_spec_has_learned_member():
    spec = default_spec()
    cnn = spec.member("cnniqa")
    assert cnn.differentiable and cnn.direction == "higher" and cnn.weights_path == "cnniqa_rank.pth"
    assert spec.names == ("niqe", "piqe", "cnniqa")


# ----------------------------------------------------------------------------- reward leak

M = Member(name="m", weight=1.0, direction="lower", raw_range=(2.0, 30.0))


def test_leaky_normalise_keeps_value_and_passes_gradient_outside_range():
    raw = torch.tensor([1.0, 10.0, 40.0, float("nan")], requires_grad=True)
    hard = normalise(raw.detach(), M)
    soft = normalise(raw, M, leak=0.1)
    torch.testing.assert_close(soft.detach(), hard)
    soft.sum().backward()
    g = raw.grad
    scale = -1.0 / 28.0  # "lower" direction
    torch.testing.assert_close(g[:3], torch.tensor([0.1 * scale, scale, 0.1 * scale]))
    assert g[3] == 0.0
    # without leak: the old hard clamp, zero gradient outside the range
    raw.grad = None
    normalise(raw, M).sum().backward()
    torch.testing.assert_close(raw.grad[:3], torch.tensor([0.0, scale, 0.0]))


def test_reward_gradient_survives_out_of_range_raw(ens):
    """A member whose raw range excludes every image still steers the reward through the leak."""
    from qt_train.iqa import Ensemble

    cnn = dataclasses.replace(default_spec().member("cnniqa"), raw_range=(50.0, 60.0))
    e = Ensemble(EnsembleSpec(members=(cnn,)), device="cpu")
    x = _nchw(held_out_clean(2, 128)).clone().requires_grad_(True)
    r = e.reward(x)
    assert (r == 0).all()  # value: clamped to the worst quality
    r.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
