"""Image/video IO: every odd file has a defined outcome."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from qt_train.data.io import (
    DataError,
    ImageReadError,
    MissingDataError,
    image_size,
    list_images,
    read_image,
    write_image,
)
from qt_train.data.video import count_frames, iter_video_frames, sample_frames


def _check(img: np.ndarray, h: int = 48, w: int = 64) -> None:
    assert img.dtype == np.float32 and img.shape == (h, w, 3)
    assert img.min() >= 0.0 and img.max() <= 1.0


def test_rgb_png_exact(image_zoo, make_rgb):
    img = read_image(image_zoo["rgb"])
    _check(img)
    np.testing.assert_allclose(img, make_rgb(48, 64) / 255.0, atol=1e-6)


def test_jpeg_close(image_zoo, make_rgb):
    img = read_image(image_zoo["jpg"])
    _check(img)
    assert np.abs(img - make_rgb(48, 64) / 255.0).mean() < 0.02


def test_gray_replicated(image_zoo):
    img = read_image(image_zoo["gray"])
    _check(img)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def test_gray16_scaled(image_zoo):
    img = read_image(image_zoo["gray16"])
    _check(img)
    expected = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16) / 65535.0
    np.testing.assert_allclose(img[..., 0], expected, atol=1e-6)
    assert len(np.unique(img)) > 256  # precision kept, not reduced to 8 bits


def test_rgb16_keeps_precision(image_zoo):
    img = read_image(image_zoo["rgb16"])
    _check(img)
    g16 = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    np.testing.assert_allclose(img[..., 0], g16 / 65535.0, atol=1e-6)
    np.testing.assert_allclose(img[..., 1], g16[::-1] / 65535.0, atol=1e-6)
    np.testing.assert_allclose(img[..., 2], 40000 / 65535.0, atol=1e-6)


def test_alpha_dropped(image_zoo, make_rgb):
    img = read_image(image_zoo["rgba"])  # alpha is 7/255 everywhere: compositing would darken
    np.testing.assert_allclose(img, make_rgb(48, 64) / 255.0, atol=1e-6)


def test_palette(image_zoo, make_rgb):
    img = read_image(image_zoo["palette"])
    _check(img)
    assert np.abs(img - make_rgb(48, 64) / 255.0).mean() < 0.05


def test_cmyk_jpeg_to_rgb(image_zoo):
    img = read_image(image_zoo["cmyk"])
    _check(img)
    r, g, b = img.reshape(-1, 3).mean(0)
    assert r > 0.9 and g < 0.1 and b < 0.1


@pytest.mark.parametrize("key, words", [
    ("empty", "empty"),
    ("trunc_png", "truncated"),
    ("trunc_jpg", "truncated"),
    ("corrupt", ""),
    ("text", "not a recognised image"),
])
def test_bad_files_raise_one_line(image_zoo, key, words):
    path = image_zoo[key]
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    msg = str(info.value)
    assert path.name in msg and "\n" not in msg and words in msg
    assert isinstance(info.value, ValueError)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_truncated_refused_when_pil_global_flipped(image_zoo, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError, match="LOAD_TRUNCATED_IMAGES"):
        read_image(image_zoo["trunc_jpg"])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(tmp_path, make_rgb, orientation):
    from PIL import Image, ImageOps

    path = tmp_path / f"o{orientation}.jpg"
    im = Image.fromarray(make_rgb(32, 64, seed=orientation))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=100, exif=exif)
    got = read_image(path)
    with Image.open(path) as ref:
        expected = np.asarray(ImageOps.exif_transpose(ref).convert("RGB")) / 255.0
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert image_size(path) == got.shape[:2]


def test_large_jpeg_downscaled_without_warning(tmp_path, make_rgb):
    # 12000 x 9000 = 108 MP: above Pillow's decompression-bomb *warning* threshold.
    big = cv2.resize(make_rgb(90, 120, seed=3), (12000, 9000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.jpg"
    assert cv2.imwrite(str(path), big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    del big
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = read_image(path, max_side=1024)
    assert time.perf_counter() - t0 < 5.0
    assert img.shape == (768, 1024, 3)
    expected = cv2.resize(make_rgb(90, 120, seed=3), (1024, 768), interpolation=cv2.INTER_LINEAR)
    assert np.abs(img - expected / 255.0).mean() < 0.03
    with pytest.raises(ImageReadError, match="pixel limit"):
        read_image(path, max_pixels=50_000_000)


def test_large_png_downscaled_with_area(tmp_path, make_rgb):
    path = tmp_path / "wide.png"
    src = cv2.resize(make_rgb(30, 40), (2000, 1500), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(path), src[..., ::-1])
    img = read_image(path, max_side=500)
    assert img.shape == (375, 500, 3)
    full = read_image(path, max_side=None)
    assert full.shape == (1500, 2000, 3)


def test_write_roundtrip_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((20, 30, 3)).astype(np.float32)
    write_image(tmp_path / "a.png", img)
    np.testing.assert_allclose(read_image(tmp_path / "a.png"), img, atol=0.5 / 255 + 1e-6)
    write_image(tmp_path / "b.png", img, bits=16)
    np.testing.assert_allclose(read_image(tmp_path / "b.png"), img, atol=0.5 / 65535 + 1e-6)
    write_image(tmp_path / "sub" / "c.jpg", img)
    assert read_image(tmp_path / "sub" / "c.jpg").shape == (20, 30, 3)
    with pytest.raises(ValueError):
        write_image(tmp_path / "d.jpg", img, bits=16)
    with pytest.raises(ValueError):
        write_image(tmp_path / "d.xyz", img)


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    old = np.zeros((8, 8, 3), np.float32)
    write_image(target, old)
    before = target.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_image(target, np.ones((8, 8, 3), np.float32))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]  # no temp file left


def test_list_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b.PNG", "a.jpg", "notes.txt", ".hidden.png", "sub/c.png"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.jpg", "b.PNG", "c.png"]


def test_list_images_errors(tmp_path):
    with pytest.raises(MissingDataError, match="does not exist") as info:
        list_images(tmp_path / "missing")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images"):
        list_images(tmp_path / "empty")


# ---- video ---------------------------------------------------------------------------------


def test_video_frames(small_video):
    frames = list(iter_video_frames(small_video))
    assert len(frames) == 20 == count_frames(small_video)
    assert frames[0].dtype == np.float32 and frames[0].shape == (48, 64, 3)
    means = [f.mean() for f in frames]
    np.testing.assert_allclose(means, np.arange(20) * 10 / 255.0, atol=0.02)
    strided = list(iter_video_frames(small_video, stride=5, max_frames=3))
    np.testing.assert_allclose([f.mean() for f in strided], [0, 50 / 255, 100 / 255], atol=0.02)
    spread = sample_frames(small_video, 3)
    np.testing.assert_allclose([f.mean() for f in spread], [0, 100 / 255, 190 / 255], atol=0.02)


def test_unreadable_videos(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    with pytest.raises(ImageReadError, match="junk.mp4"):
        list(iter_video_frames(junk))
    with pytest.raises(ImageReadError, match="does not exist"):
        list(iter_video_frames(tmp_path / "missing.mp4"))
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        count_frames(tmp_path / "empty.avi")


def test_video_damaged_midway_warns(small_video, tmp_path):
    data = bytearray(small_video.read_bytes())
    n = len(data)
    data[n // 3: 2 * n // 3] = bytes(2 * n // 3 - n // 3)  # zero the middle third
    broken = tmp_path / "broken.avi"
    broken.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"stopped decoding after \d+ of 20 frames"):
        frames = list(iter_video_frames(broken))
    assert 0 < len(frames) < 20


def test_image_size_probe(image_zoo):
    assert image_size(image_zoo["rgb"]) == (48, 64)
    for key in ("empty", "text"):
        with pytest.raises(ImageReadError):
            image_size(image_zoo[key])


def test_paths_accept_str(image_zoo):
    assert read_image(str(image_zoo["rgb"])).shape == (48, 64, 3)
    assert isinstance(list_images(str(Path(image_zoo["rgb"]).parent))[0], Path)


def test_png_damaged_inside_its_data_is_refused(tmp_path) -> None:
    """Bytes flipped inside IDAT (the file keeps its length): Pillow decodes it without an error
    into a half-black image; the reader checks the chunk CRCs and refuses it (issue: half-decoded
    PNGs were returned)."""
    import io as _io

    from PIL import Image

    from qt_train.data.io import ImageReadError, read_image

    buf = _io.BytesIO()
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[len(data) // 2 : len(data) // 2 + 20] = b"\x00" * 20
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="damaged PNG"):
        read_image(path)
