"""Training datasets: early errors, skip-and-replace, determinism across workers."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from qt_train.data.datasets import (
    Augment,
    DataError,
    MissingDataError,
    PairedFolder,
    UnpairedFolder,
    VideoFrames,
)
from qt_train.data.io import write_image


def _write_video(path: Path, n: int = 20) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def real_folder(tmp_path, make_rgb) -> Path:
    """7 good images (one smaller than the patch), 1 video, and 5 bad files."""
    d = tmp_path / "real"
    d.mkdir()
    for i in range(6):
        write_image(d / f"img{i}.png", make_rgb(64 + 8 * i, 80, seed=i))
    write_image(d / "tiny.jpg", make_rgb(20, 24, seed=9))
    _write_video(d / "clip.avi")
    good = (d / "img0.png").read_bytes()
    (d / "trunc.png").write_bytes(good[: len(good) // 2])  # header fine, body cut: found late
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    (d / "junk.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000,
                                                                         dtype=np.uint8)))
    return d


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_unpaired_probe_warns_and_counts(real_folder):
    with pytest.warns(UserWarning) as record:
        ds = UnpairedFolder(real_folder, patch=32, seed=1, video_stride=5)
    warned = " ".join(str(r.message) for r in record)
    for name in ("empty.jpg", "text.png", "junk.mp4"):
        assert name in warned
    # 6 + tiny + trunc images, 20 frames / stride 5 = 4 video items
    assert len(ds) == 8 + 4
    assert ds.total == 12 + 3
    assert ds.summary().startswith("skipped 3 of 15 items")


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_never_raises_and_counts(real_folder, workers):
    ds = _quiet(UnpairedFolder, real_folder, patch=32, seed=1, video_stride=5)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        seen = 0
        for batch in loader:
            assert batch["img"].shape[1:] == (3, 32, 32)
            assert batch["img"].dtype == torch.float32
            assert batch["img"].min() >= 0.0 and batch["img"].max() <= 1.0
            seen += len(batch["name"])
    assert seen == len(ds)
    # The truncated file was found by a worker; the main process sees it via shared memory.
    assert any("trunc.png" in s for s in ds.skipped)
    assert len(ds.skipped) == 4
    assert ds.summary().startswith("skipped 4 of 15 items: ")
    if workers == 0:
        assert sum("trunc.png" in str(r.message) for r in record) == 1  # one warning only


def test_replacement_is_deterministic(real_folder):
    ds = _quiet(UnpairedFolder, real_folder, patch=32, seed=1, video_stride=5)
    i = next(k for k, r in enumerate(ds.refs) if r.path.name == "trunc.png")
    with pytest.warns(UserWarning, match="trunc.png"):
        a = ds[i]
    b = ds[i]  # second time: no warning, same replacement
    assert a["name"] == b["name"] != "trunc"
    assert torch.equal(a["img"], b["img"])


def test_crops_depend_only_on_seed_epoch_index(real_folder):
    ds = _quiet(UnpairedFolder, real_folder, patch=24, seed=3, video_stride=5)
    ds2 = _quiet(UnpairedFolder, real_folder, patch=24, seed=3, video_stride=5)
    order = [5, 0, 2]
    first = {i: ds[i]["img"] for i in order}
    for i in reversed(order):  # access order does not matter
        assert torch.equal(ds2[i]["img"], first[i])
    ds.set_epoch(1)
    assert ds.epoch == 1
    assert any(not torch.equal(ds[i]["img"], first[i]) for i in order)
    ds.set_epoch(0)
    assert all(torch.equal(ds[i]["img"], first[i]) for i in order)
    other_seed = _quiet(UnpairedFolder, real_folder, patch=24, seed=4, video_stride=5)
    assert any(not torch.equal(other_seed[i]["img"], first[i]) for i in order)


def test_workers_match_main_process_and_follow_set_epoch(real_folder):
    ds = _quiet(UnpairedFolder, real_folder, patch=24, seed=5, video_stride=5)
    loader = DataLoader(ds, batch_size=len(ds), num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)  # persistent workers see it through shared memory
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = next(iter(loader))
            expected = torch.stack([ds[i]["img"] for i in range(len(ds))])
        assert torch.equal(batch["img"], expected), epoch


def test_small_images_are_reflect_padded(real_folder):
    ds = _quiet(UnpairedFolder, real_folder, patch=48, seed=0, video_stride=5)
    i = next(k for k, r in enumerate(ds.refs) if r.path.name == "tiny.jpg")
    item = ds[i]
    assert item["name"] == "tiny" and item["img"].shape == (3, 48, 48)
    full = _quiet(UnpairedFolder, real_folder, patch=None, augment=False, video_stride=5)
    assert full[i]["img"].shape == (3, 20, 24)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(MissingDataError, match="does not exist") as info:
        UnpairedFolder(tmp_path / "nope")
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no images or videos"):
        UnpairedFolder(tmp_path / "empty")


def test_all_bad_is_an_error(tmp_path, make_rgb):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_text("nope")
    with pytest.raises(DataError, match="all 2 files failed"):
        _quiet(UnpairedFolder, tmp_path)
    good = tmp_path / "c.png"
    write_image(good, make_rgb(64, 64))
    good.write_bytes(good.read_bytes()[:2000])  # header parses, body truncated
    ds = _quiet(UnpairedFolder, tmp_path, patch=4)
    with pytest.raises(DataError, match="failed to load"):
        _quiet(ds.__getitem__, 0)


# ---- paired ----------------------------------------------------------------------------------


@pytest.fixture
def pair_dirs(tmp_path, make_rgb) -> tuple[Path, Path]:
    lq, gt = tmp_path / "lq", tmp_path / "gt"
    lq.mkdir()
    gt.mkdir()
    for i in range(5):
        img = make_rgb(40 + 4 * i, 56, seed=i)
        write_image(gt / f"{i:03d}.png", img)
        write_image(lq / f"{i:03d}.png", 255 - img)  # lq = 1 - gt, pixel-aligned
    return lq, gt


def test_paired_same_crop_and_flips(pair_dirs):
    ds = PairedFolder(*pair_dirs, patch=32, augment=Augment(rot90=True), seed=2)
    assert len(ds) == 5
    for e in range(3):
        ds.set_epoch(e)
        for i in range(len(ds)):
            item = ds[i]
            assert item["name"] == f"{i:03d}"
            assert item["lq"].shape == item["gt"].shape == (3, 32, 32)
            torch.testing.assert_close(item["lq"], 1.0 - item["gt"], atol=1e-6, rtol=0)


def test_paired_loader_two_workers(pair_dirs):
    lq, gt = pair_dirs
    (lq / "004.png").write_bytes((lq / "004.png").read_bytes()[:60])  # truncated LQ
    ds = PairedFolder(lq, gt, patch=16, seed=0)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert sum(len(b["name"]) for b in batches) == 5
    assert ds.skipped == [str(lq / "004.png")]
    assert ds.summary() == "skipped 1 of 5 pairs: 004.png"


def test_paired_no_matching_names(pair_dirs, tmp_path):
    lq, _ = pair_dirs
    other = tmp_path / "other"
    other.mkdir()
    for name in ("a.png", "b.png"):
        write_image(other / name, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(DataError, match=r"all 7 names mismatch, e\.g\. LQ '000.png' vs GT 'a.png'"):
        PairedFolder(lq, other)


def test_paired_partial_mismatch_and_size_mismatch(pair_dirs):
    lq, gt = pair_dirs
    (lq / "003.png").unlink()
    write_image(lq / "extra.png", np.zeros((8, 8, 3), np.float32))
    write_image(lq / "002.png", np.zeros((10, 10, 3), np.float32))  # wrong size
    with pytest.warns(UserWarning) as record:
        ds = PairedFolder(lq, gt, patch=16)
    text = " | ".join(str(r.message) for r in record)
    assert "1 LQ and 1 GT images" in text and "'extra' has no GT" in text
    assert "sizes differ" in text
    assert len(ds) == 3 and ds.summary().startswith("skipped 1 of 4 pairs")


def test_paired_duplicate_stem(pair_dirs):
    lq, gt = pair_dirs
    write_image(lq / "000.jpg", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(DataError, match="two images named '000'"):
        PairedFolder(lq, gt)


# ---- video -----------------------------------------------------------------------------------


def test_video_frames_dataset(tmp_path):
    path = _write_video(tmp_path / "v.avi")
    ds = VideoFrames(path, patch=None, stride=5)
    assert len(ds) == 4
    items = [ds[i] for i in range(4)]
    assert [it["frame"] for it in items] == [0, 5, 10, 15]
    assert [it["name"] for it in items] == ["v#0", "v#5", "v#10", "v#15"]
    np.testing.assert_allclose([it["img"].mean().item() for it in items],
                               [0, 50 / 255, 100 / 255, 150 / 255], atol=0.02)
    seek = VideoFrames(path, patch=16, stride=5, cache_mb=0)  # too big to cache: seeks
    np.testing.assert_allclose(seek[2]["img"].mean().item(), 100 / 255, atol=0.02)
    capped = VideoFrames(path, patch=8, max_frames=3)
    assert [r.frame for r in capped.refs] == [0, 10, 19]
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert sum(len(b["name"]) for b in batches) == 4


def test_video_frames_errors(tmp_path):
    with pytest.raises(MissingDataError):
        VideoFrames(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    with pytest.raises(DataError, match="junk.mp4"):
        VideoFrames(junk)
