"""The photos no run trains on (qt_train/data/unseen.py): the validation set and the wider held-out set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qt_train.data.clean import SOURCES, package_photos, sample_clean
from qt_train.data.streams import validation_pairs
from qt_train.data.unseen import ENV, UNSEEN_PHOTOS, UnseenPhotosMissing, unseen_pairs, unseen_photos


def test_roles_are_disjoint_and_no_training_photo_is_among_them():
    validation, heldout = (set(UNSEEN_PHOTOS[r]) for r in ("validation", "heldout"))
    assert not validation & heldout
    assert not (validation | heldout) & {p.name for p in package_photos()}


@pytest.mark.parametrize("role", ["validation", "heldout"])
def test_every_photo_of_a_role_loads_in_colour(role):
    photos = unseen_photos(role)
    assert [p.name for p in photos] == list(UNSEEN_PHOTOS[role])  # the whole table, in its order
    for p in photos:
        assert p.image.ndim == 3 and min(p.image.shape[:2]) >= 256, p.name
        chroma = np.abs(p.image[..., 0] - p.image[..., 1]).mean() + np.abs(p.image[..., 2] - p.image[..., 1]).mean()
        assert chroma > 0.02, f"{p.name} is nearly grey"


def test_pairs_are_deterministic_degraded_and_differ_by_role():
    lq, gt = unseen_pairs("dehaze", "validation", 4, 64)
    lq2, gt2 = unseen_pairs("dehaze", "validation", 4, 64)
    assert lq.shape == gt.shape == (4, 3, 64, 64)
    assert torch.equal(lq, lq2) and torch.equal(gt, gt2)
    assert (lq - gt).abs().mean() > 0.01  # degraded
    _, other = unseen_pairs("dehaze", "heldout", 4, 64)
    assert not torch.equal(gt, other)
    v = validation_pairs("dehaze", 4, 64)  # what chooses winners is this set
    assert torch.equal(v.gt, gt)


def test_no_config_can_train_on_them():
    assert "unseen" not in SOURCES and not any("unseen" in name for name in SOURCES)
    with pytest.raises(ValueError, match="unknown clean source"):
        sample_clean("unseen", 1, 32)


def test_a_missing_folder_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(UnseenPhotosMissing) as err:
        unseen_photos("validation")
    msg = str(err.value)
    assert "opencv-doc" in msg and "make sysdeps" in msg and "\n" not in msg
