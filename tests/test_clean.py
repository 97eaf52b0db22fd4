"""Clean-image sources: statistics, licences, determinism, no network."""

from __future__ import annotations

import socket
import time
import warnings

import numpy as np
import pytest

from qt_train.data import clean
from qt_train.data.clean import (
    SOURCES,
    dead_leaves,
    folder_photos,
    package_photos,
    random_scene_crop,
    sample_clean,
)


def _spectrum_slope(img: np.ndarray) -> float:
    """Slope of the radially averaged power spectrum in log-log (natural images: about -2)."""
    gray = img.mean(axis=2)
    gray = gray - gray.mean()
    h, w = gray.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray * win))) ** 2
    yy, xx = np.indices((h, w))
    r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    radial = np.bincount(r.ravel(), power.ravel()) / np.bincount(r.ravel())
    f = np.arange(len(radial))
    sel = (f >= 4) & (f <= min(h, w) // 3)
    return float(np.polyfit(np.log(f[sel]), np.log(radial[sel]), 1)[0])


def test_dead_leaves_shape_range_speed_determinism():
    t0 = time.perf_counter()
    imgs = dead_leaves(8, 256, np.random.default_rng(0))
    elapsed = time.perf_counter() - t0
    assert imgs.shape == (8, 256, 256, 3) and imgs.dtype == np.float32
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0
    assert elapsed < 2.0  # about 0.3 s on the 2-core dev machine
    again = dead_leaves(8, 256, np.random.default_rng(0))
    assert np.array_equal(imgs, again)
    assert dead_leaves(2, (64, 96), 1).shape == (2, 64, 96, 3)


def test_dead_leaves_natural_statistics():
    imgs = dead_leaves(8, 256, 3)
    slopes = [_spectrum_slope(im) for im in imgs]
    assert all(-4.2 < s < -1.5 for s in slopes), slopes  # single images vary, as photos do
    assert -3.0 < np.mean(slopes) < -1.5, slopes
    for im in imgs:
        gray = im.mean(axis=2)
        grad = np.hypot(np.diff(gray, axis=0)[:, :-1], np.diff(gray, axis=1)[:-1])
        assert grad.max() > 0.4                # sharp occlusion edges exist ...
        assert (grad > 0.15).mean() > 0.01
        assert np.percentile(grad, 25) < 0.02  # ... between smooth surfaces
        assert im.std() > 0.05                 # not flat
        chroma = np.abs(im - im.mean(axis=2, keepdims=True)).mean()
        assert chroma > 0.01             # coloured


def test_dead_leaves_horizon_has_sky_on_top():
    imgs = dead_leaves(6, (128, 160), 5, variant="horizon")

    def busy(a):
        return np.abs(np.diff(a.mean(axis=-1), axis=-1)).mean()

    for im in imgs:
        top = im[:16].reshape(-1, 3).mean(0)
        assert top[2] > top[0]  # bluish sky
    assert busy(imgs[:, :16]) < busy(imgs[:, -32:])  # smooth sky, busy foreground (on average)
    with pytest.raises(ValueError):
        dead_leaves(1, 32, 0, variant="nope")


def test_package_photos_offline_with_licences(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("package_photos tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    clean._package_photos_cached.cache_clear()
    photos = package_photos()
    assert len(photos) >= 5
    names = {p.name for p in photos}
    assert {"astronaut", "chelsea", "coffee", "china", "flower"} <= names
    for p in photos:
        assert p.licence and p.source
        assert p.image.dtype == np.float32 and p.image.ndim == 3 and p.image.shape[2] == 3
        assert min(p.image.shape[:2]) >= 256
        chroma = np.abs(p.image - p.image.mean(axis=2, keepdims=True)).mean()
        assert chroma > 0.01, p.name  # colour photos only
        assert p.name in clean.__doc__  # the docstring table the README cites is complete
    assert any("CC BY" in p.licence for p in photos)


def test_sample_clean_every_source(tmp_path):
    (tmp_path / "photos").mkdir()
    from qt_train.data.io import write_image

    write_image(tmp_path / "photos" / "a.png", dead_leaves(1, (300, 400), 0)[0])
    write_image(tmp_path / "photos" / "b.jpg", dead_leaves(1, (120, 90), 1)[0])  # small: upsized
    (tmp_path / "photos" / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(UserWarning, match="bad.jpg"):  # drawn often enough to be hit
        sample_clean("folder", 12, 32, 0, folder=tmp_path / "photos")
    for source in SOURCES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = sample_clean(source, 6, (96, 128), np.random.default_rng(7),
                             folder=tmp_path / "photos")
            b = sample_clean(source, 6, (96, 128), 7, folder=tmp_path / "photos")
        assert a.shape == (6, 96, 128, 3) and a.dtype == np.float32
        assert a.min() >= 0.0 and a.max() <= 1.0
        assert np.array_equal(a, b), source


def test_sample_clean_mixed_without_folder_and_errors():
    a = sample_clean("mixed", 4, 64, 0)
    assert a.shape == (4, 64, 64, 3)
    assert not np.array_equal(a, sample_clean("mixed", 4, 64, 1))
    with pytest.raises(ValueError, match="unknown clean source"):
        sample_clean("imagenet", 1, 64, 0)
    with pytest.raises(ValueError, match="folder"):
        sample_clean("folder", 1, 64, 0)


def test_folder_photos_skips_bad_with_one_warning_each(tmp_path):
    from qt_train.data.io import write_image

    write_image(tmp_path / "good.png", np.full((10, 12, 3), 0.5, np.float32))
    (tmp_path / "bad1.png").write_bytes(b"")
    (tmp_path / "bad2.jpg").write_text("nope")
    with pytest.warns(UserWarning) as record:
        photos = folder_photos(tmp_path)
    assert [p.name for p in photos] == ["good"]
    messages = [str(r.message) for r in record]
    assert len(messages) == 2 and "bad1.png" in messages[0] and "bad2.jpg" in messages[1]


def test_random_scene_crop_scales():
    rng = np.random.default_rng(0)
    small = np.random.default_rng(1).random((40, 50, 3)).astype(np.float32)
    assert random_scene_crop(small, 64, rng).shape == (64, 64, 3)
    big = np.zeros((2000, 3000, 3), np.float32)
    big[:, 1500:] = 1.0  # a scene-level edge in the middle
    crops = [random_scene_crop(big, 128, rng) for _ in range(8)]
    # Downscaled first, so a crop usually sees a scene feature rather than a flat patch.
    assert sum(0.05 < c.mean() < 0.95 for c in crops) >= 2
