"""Calibration frame selection: determinism, diversity, caching, warnings, refusal."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from calibration.frames import CalibrationError, frame_set_hash, select_frames


@pytest.fixture
def footage(tmp_path: Path, make_rgb) -> Path:
    """12 images in two 'scenes' (dark and bright) plus a 20-frame video."""
    import cv2

    d = tmp_path / "footage"
    d.mkdir()
    for i in range(12):
        img = make_rgb(60, 80, seed=i).astype(np.float32)
        img = img * (0.25 if i % 2 else 1.0)
        cv2.imwrite(str(d / f"{i:02d}.png"), img.astype(np.uint8))
    writer = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return d


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return select_frames(**kw)


def test_shape_dtype_and_determinism(footage: Path) -> None:
    a = _quiet(paths=footage, n=10, size=(24, 32), seed=3, iqa=False)
    b = _quiet(paths=[footage], n=10, size=(24, 32), seed=3, iqa=False)
    assert a.frames.shape == (10, 24, 32, 3) and a.frames.dtype == np.uint8
    assert a.hash == b.hash == frame_set_hash(a.frames)
    assert np.array_equal(a.frames, b.frames)
    c = _quiet(paths=footage, n=10, size=(24, 32), seed=4, iqa=False)
    assert c.hash != a.hash  # another seed picks another (still deterministic) set


def test_selection_spans_scenes(footage: Path) -> None:
    cs = _quiet(paths=footage, n=6, size=(24, 32), seed=0, iqa=False, clusters=3)
    lum = cs.frames.reshape(len(cs), -1).mean(1)
    assert lum.max() - lum.min() > 60  # both dark and bright frames were picked


def test_iqa_stratification_records_levels(footage: Path) -> None:
    cs = _quiet(paths=footage, n=6, size=(48, 64), seed=0, iqa=True)
    assert cs.levels.shape == (6,) and (cs.levels >= 0).all()


def test_cache_second_call_loads(footage: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    a = _quiet(paths=footage, n=8, size=(24, 32), seed=0, iqa=False, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    import calibration.frames as cf

    def boom(*a, **k):
        raise AssertionError("recomputed despite a cache hit")

    monkeypatch.setattr(cf, "_candidates", boom)
    b = _quiet(paths=footage, n=8, size=(24, 32), seed=0, iqa=False, cache_dir=cache)
    assert b.hash == a.hash and np.array_equal(a.frames, b.frames)


def test_warns_below_300(footage: Path) -> None:
    with pytest.warns(UserWarning, match="300"):
        select_frames(footage, n=5, size=(24, 32), iqa=False)


def test_refuses_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("not an image")
    (bad / "b.mp4").write_bytes(b"\x00" * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CalibrationError, match="no readable frames"):
            select_frames(bad, n=4, size=(24, 32), iqa=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images or videos"):
        select_frames(empty, n=4, iqa=False)
    with pytest.raises(CalibrationError, match="does not exist"):
        select_frames(tmp_path / "missing", n=4, iqa=False)
