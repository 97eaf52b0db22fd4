"""Tests of the degradation engine (qt_train.data.degrade) and its preview grids."""

from __future__ import annotations

import dataclasses
import json
import time

import cv2
import numpy as np
import pytest

from qt_core.metrics import psnr
from qt_train.data.degrade import DOMAINS, SYNTHESIZERS, TASKS, default_params, degrade
from qt_train.data.degrade.rain import RainParams
from qt_train.data.preview import write_previews

SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def smooth_images(n: int = 4, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """Clean test scenes: two-colour gradients with a few anti-aliased discs and a rectangle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for _ in range(n):
        c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / (h + w) + 0.5
        img = (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)
        for _ in range(3):
            colour = tuple(float(v) for v in rng.uniform(0.05, 0.95, 3))
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(img, centre, int(rng.integers(h // 10, h // 4)), colour, -1, cv2.LINE_AA)
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        colour = tuple(float(v) for v in rng.uniform(0.0, 1.0, 3))
        cv2.rectangle(img, (x0, y0), (x0 + w // 3, y0 + h // 4), colour, -1)
        out.append(np.clip(img, 0.0, 1.0))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return smooth_images()


def flat(value: float, n: int = 2, size: int = 128) -> np.ndarray:
    return np.full((n, size, size, 3), value, np.float32)


# ----------------------------------------------------------------------------------------------- interface


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("task", TASKS)
def test_shape_dtype_range_and_records(task: str, domain: str, clean: np.ndarray) -> None:
    lq, records = degrade(task, domain, clean, 0)
    assert lq.shape == clean.shape and lq.dtype == np.float32
    assert np.isfinite(lq).all() and lq.min() >= 0.0 and lq.max() <= 1.0
    assert not np.allclose(lq, clean, atol=1e-3)
    assert len(records) == clean.shape[0]
    for r in records:
        assert r["task"] == task and r["domain"] == domain and r["severity"] is None
        json.loads(json.dumps(r))  # plain JSON types only


@pytest.mark.parametrize("task", TASKS)
def test_single_image_keeps_rank(task: str, clean: np.ndarray) -> None:
    lq, records = degrade(task, "realistic", clean[0], 3, severity=0.5)
    assert lq.shape == clean[0].shape and lq.dtype == np.float32 and len(records) == 1


@pytest.mark.parametrize("hw", [(16, 16), (17, 23), (360, 640)])
@pytest.mark.parametrize("domain", DOMAINS)
def test_odd_and_video_sizes(hw: tuple[int, int], domain: str) -> None:
    img = smooth_images(1, *hw)
    for task in TASKS:
        lq, _ = degrade(task, domain, img, 1)
        assert lq.shape == img.shape and np.isfinite(lq).all()


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("task", TASKS)
def test_deterministic_and_seed_dependent(task: str, domain: str, clean: np.ndarray) -> None:
    a, ra = degrade(task, domain, clean, 123)
    b, rb = degrade(task, domain, clean, np.random.default_rng(123))
    c, _ = degrade(task, domain, clean, 124)
    assert np.array_equal(a, b) and ra == rb
    assert not np.array_equal(a, c)


def test_generator_is_advanced_in_place(clean: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    a, _ = degrade("dehaze", "synthetic", clean, rng)
    b, _ = degrade("dehaze", "synthetic", clean, rng)
    assert not np.array_equal(a, b)


def test_errors(clean: np.ndarray) -> None:
    with pytest.raises(ValueError, match="dehaze"):
        degrade("deblur", "synthetic", clean, 0)
    with pytest.raises(ValueError, match="realistic"):
        degrade("dehaze", "real", clean, 0)
    with pytest.raises(ValueError, match="dehaze"):
        default_params("nope")
    with pytest.raises(ValueError, match="severity"):
        degrade("dehaze", "synthetic", clean, 0, severity=1.5)
    with pytest.raises(TypeError):
        degrade("dehaze", "synthetic", clean, 0, params=RainParams())
    with pytest.raises(ValueError):
        degrade("dehaze", "synthetic", clean[..., :2], 0)
    with pytest.raises(ValueError):
        degrade("dehaze", "synthetic", np.zeros((8, 8, 3), np.float32), 0)


@pytest.mark.parametrize("task", TASKS)
def test_params_dataclasses_are_frozen_typed_and_buildable(task: str) -> None:
    p = default_params(task)
    cls = SYNTHESIZERS[task].params_cls
    assert isinstance(p, cls) and dataclasses.is_dataclass(p) and cls.__doc__
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.jpeg_prob = 0.0  # type: ignore[misc]
    kwargs = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        assert f.default is not dataclasses.MISSING, f.name
        assert isinstance(v, (float, int, bool, tuple)), (f.name, v)
        if isinstance(v, tuple):
            assert len(v) == 2 and all(isinstance(e, (float, int)) for e in v), f.name
        kwargs[f.name] = list(v) if isinstance(v, tuple) else v  # what a YAML loader hands over
    lq, _ = degrade(task, "realistic", smooth_images(1, 32, 32), 0, params=cls(**kwargs))
    assert lq.shape == (1, 32, 32, 3)


# ----------------------------------------------------------------------------------------------- severity


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("task", TASKS)
def test_severity_monotone_psnr(task: str, domain: str, clean: np.ndarray) -> None:
    scores = np.stack([psnr(degrade(task, domain, clean, 7, severity=s)[0], clean) for s in SEVERITIES])
    mean = scores.mean(axis=1)
    assert (np.diff(mean) < -0.2).all(), mean
    if domain == "synthetic":  # the clean paired distribution is monotone for every image
        assert (np.diff(scores, axis=0) < 0).all(), scores


def test_severity_fixes_main_strength_and_keeps_nuisances(clean: np.ndarray) -> None:
    p = default_params("dehaze")
    _, r0 = degrade("dehaze", "synthetic", clean, 5, severity=0.0)
    _, r1 = degrade("dehaze", "synthetic", clean, 5, severity=1.0)
    assert all(r["beta"] == pytest.approx(p.beta[0], rel=1e-5) for r in r0)
    assert all(r["beta"] == pytest.approx(p.beta[1], rel=1e-5) for r in r1)
    assert [r["airlight"] for r in r0] == [r["airlight"] for r in r1]
    assert all(r["severity"] == 1.0 for r in r1)
    _, rs = degrade("dehaze", "synthetic", clean, 5)
    assert all(p.beta[0] <= r["beta"] <= p.beta[1] for r in rs)


# ----------------------------------------------------------------------------------------------- physics


def dark_channel(x: np.ndarray, k: int = 7) -> np.ndarray:
    m = x.min(axis=-1)
    return np.stack([cv2.erode(mi, np.ones((k, k), np.uint8)) for mi in m])


def luma(x: np.ndarray) -> np.ndarray:
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def high_pass(x: np.ndarray) -> np.ndarray:
    """Local contrast: std of luma minus its blur (the smooth depth proxy barely contributes)."""
    y = luma(x)
    low = np.stack([cv2.GaussianBlur(yi, (0, 0), 2.0) for yi in y])
    return (y - low).std(axis=(1, 2))


def test_haze_raises_dark_channel_and_lowers_contrast(clean: np.ndarray) -> None:
    lq, _ = degrade("dehaze", "synthetic", clean, 0, severity=0.5)
    assert dark_channel(lq).mean() > dark_channel(clean).mean() + 0.1
    assert (high_pass(lq) < 0.8 * high_pass(clean)).all()  # edges scaled by t < 1


def test_underwater_attenuates_red_most(clean: np.ndarray) -> None:
    lq, records = degrade("underwater", "synthetic", clean, 0, severity=0.5)
    ratio = lq.mean(axis=(1, 2)) / clean.mean(axis=(1, 2))  # (N, 3): R, G, B
    assert (ratio[:, 0] < 0.7 * ratio[:, 2]).all() and (ratio[:, 0] < ratio[:, 1]).all()
    for r in records:  # red always absorbed fastest; coastal water absorbs blue before green
        r_, g, b = r["beta"]
        assert r_ > max(g, b) and (b > g if r["green_water"] else g > b)


def test_underwater_white_balance_lifts_red_without_overshoot(clean: np.ndarray) -> None:
    from qt_train.data.degrade.underwater import UnderwaterParams

    def lq(balance: tuple[float, float]) -> np.ndarray:
        p = UnderwaterParams(white_balance=balance)
        return degrade("underwater", "synthetic", clean, 3, severity=0.5, params=p)[0]

    def red_over_green(x: np.ndarray) -> np.ndarray:
        return x[..., 0].mean(axis=(1, 2)) / x[..., 1].mean(axis=(1, 2))

    raw, full = lq((0.0, 0.0)), lq((1.0, 1.0))
    assert (red_over_green(full) > red_over_green(raw)).all()  # the camera lifts the absorbed red ...
    assert (red_over_green(full) < red_over_green(clean)).all()  # ... but never past the scene's


def test_lowlight_darkens_and_adds_noise() -> None:
    img = flat(0.6)
    lq, _ = degrade("lowlight", "synthetic", img, 0, severity=1.0)
    assert lq.mean() < 0.5 * img.mean()
    assert lq.std(axis=(1, 2)).min() > 2.0 / 255.0  # a flat scene became grainy
    dark_mild, _ = degrade("lowlight", "synthetic", img, 0, severity=0.0)
    assert lq.mean() < dark_mild.mean() < img.mean()


def test_rain_adds_bright_oriented_streaks() -> None:
    img = flat(0.3)
    p = RainParams(angle=(0.0, 0.0), angle_jitter=0.0)
    lq, _ = degrade("derain", "synthetic", img, 0, severity=0.7, params=p)
    assert (lq - img > 0.15).mean() > 0.01
    gx = np.diff(luma(lq), axis=2) ** 2
    gy = np.diff(luma(lq), axis=1) ** 2
    assert gx.sum() > 3.0 * gy.sum()  # vertical streaks: intensity changes across, not along


def test_snow_adds_bright_blobs() -> None:
    img = flat(0.25)
    lq, _ = degrade("desnow", "synthetic", img, 0, severity=0.5)
    for im in lq:
        y = luma(im)
        mask = (y > np.median(y) + 0.25).astype(np.uint8)
        count, _ = cv2.connectedComponents(mask)
        assert count - 1 > 20
    gx = np.diff(luma(lq), axis=2) ** 2
    gy = np.diff(luma(lq), axis=1) ** 2
    assert 0.33 < gx.sum() / gy.sum() < 3.0  # roundish flakes, not long streaks


def blockiness(x: np.ndarray) -> float:
    """JPEG grid strength: median step across 8-px block borders over the median step inside
    blocks, both axes (medians ignore sparse streaks/flakes, which do not follow the grid)."""
    ratios = []
    for axis in (1, 2):
        g = np.moveaxis(np.abs(np.diff(x, axis=axis)), axis, 0)
        on_border = np.arange(g.shape[0]) % 8 == 7
        ratios.append(np.median(g[on_border]) / max(float(np.median(g[~on_border])), 1e-6))
    return float(np.mean(ratios))


@pytest.mark.parametrize("task", TASKS)
def test_realistic_is_shifted(task: str) -> None:
    img = smooth_images(8, 96, 128, seed=1)
    syn, rs = degrade(task, "synthetic", img, 2)
    real, rr = degrade(task, "realistic", img, 2)
    assert blockiness(real) > 1.2 * blockiness(syn)
    assert {"jpeg_quality", "shot_noise", "blur", "vignette"} <= set(rr[0]) - set(rs[0])
    assert any(r["jpeg_quality"] > 0 for r in rr)


def test_nonhomogeneous_haze_in_realistic() -> None:
    """Over a constant black scene the haze layer is the output: realistic fog is patchier
    horizontally (beta varies in space), synthetic haze varies only with the smooth depth proxy."""
    img = flat(0.0, n=4)
    p = default_params("dehaze")
    syn, _ = degrade("dehaze", "synthetic", img, 0, severity=0.5)
    real, _ = degrade(
        "dehaze",
        "realistic",
        img,
        0,
        severity=0.5,
        params=dataclasses.replace(p, jpeg_prob=0.0, blur_prob=0.0, vignette_prob=0.0),
    )
    blur = lambda x: cv2.GaussianBlur(luma(x).transpose(1, 2, 0), (0, 0), 3).transpose(2, 0, 1)  # noqa: E731
    assert blur(real).std(axis=2).mean() > blur(syn).std(axis=2).mean()


# ----------------------------------------------------------------------------------------------- speed, previews


def test_fast_enough() -> None:
    img = smooth_images(8, 256, 256)
    for task in TASKS:
        for domain in DOMAINS:
            t0 = time.perf_counter()
            degrade(task, domain, img, 0)
            assert time.perf_counter() - t0 < 2.0, (task, domain)


def test_previews_written(tmp_path) -> None:
    paths = write_previews(smooth_images(2, 48, 64), tmp_path / "prev", seed=1)
    assert len(paths) == len(TASKS) * len(DOMAINS)
    for task in TASKS:
        for domain in DOMAINS:
            path = tmp_path / "prev" / f"{task}_{domain}.png"
            assert path in paths
            img = cv2.imread(str(path))
            assert img is not None and img.shape[0] > 2 * 48 and img.shape[1] > 6 * 64
    assert sorted(p.name for p in (tmp_path / "prev").iterdir()) == sorted(p.name for p in paths)


def test_batched_filters_beyond_opencvs_channel_limit() -> None:
    """50 RGB images = 150 channels: over OpenCV 5's 128-channel Mat limit, so the batch is split;
    the result equals filtering each image alone."""
    from qt_train.data.degrade.common import gaussian_blur

    x = np.random.default_rng(0).random((50, 16, 16, 3), dtype=np.float32)
    want = np.stack([cv2.GaussianBlur(i, (0, 0), sigmaX=2.0, borderType=cv2.BORDER_REFLECT) for i in x])
    np.testing.assert_allclose(gaussian_blur(x, 2.0), want, rtol=0, atol=1e-6)
