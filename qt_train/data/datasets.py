"""Training datasets over user folders and videos that never crash mid-epoch.

Contract shared by every dataset here:

- Folder problems (missing, empty, no matching pairs) raise :class:`DataError` at
  construction, before any training starts. Headers of all files are probed there too, so
  unreadable files are reported up front.
- A file that fails later (e.g. truncated body) is skipped with ONE warning naming it and a
  deterministic replacement (the next readable index) is returned. ``dataset.skipped`` lists
  skipped files, ``dataset.summary()`` gives a one-line count for the end of an epoch. The
  bad-file flags and the epoch live in shared memory, so this works with DataLoader workers
  (also persistent ones) and the main process sees what workers found.
- Crops and flips of item ``i`` are a function of ``(seed, epoch, i)`` only -- not of worker
  scheduling -- so runs are reproducible and resumable. Call ``set_epoch(e)`` each epoch.
- Images smaller than the patch are reflect-padded, not resized: resizing would change the
  noise/blur/compression statistics that restoration models must learn from.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from qt_train.data.io import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    DataError,
    ImageReadError,
    MissingDataError,
    image_size,
    list_files,
    read_image_raw,
    to_float,
)
from qt_train.data.video import iter_indexed_frames, open_video

__all__ = [
    "Augment",
    "DataError",
    "MissingDataError",
    "PairedFolder",
    "UnpairedFolder",
    "VideoFrames",
]


@dataclass(frozen=True)
class Augment:
    """Which geometric augmentations to draw. For haze/rain, consider ``vflip=False``:
    upside-down scenes put the far, hazier sky at the bottom."""

    hflip: bool = True
    vflip: bool = True
    rot90: bool = False


NO_AUGMENT = Augment(hflip=False, vflip=False, rot90=False)


@dataclass(frozen=True)
class _Ref:
    """One item: an image file, or one frame of a video file (``frame`` is not None)."""

    path: Path
    name: str
    frame: int | None = None
    partner: Path | None = None  # the GT file for paired data

    @property
    def label(self) -> str:
        return str(self.path) if self.frame is None else f"{self.path}#{self.frame}"


def _as_augment(augment: bool | Augment) -> Augment:
    if isinstance(augment, Augment):
        return augment
    return Augment() if augment else NO_AUGMENT


# --------------------------------------------------------------------------------------------
# geometry: deterministic crop + flips applied identically to aligned images
# --------------------------------------------------------------------------------------------


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for item ``index`` in ``epoch``: depends on nothing else."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def crop_and_augment(arrays: list[np.ndarray], patch: int | None, augment: Augment,
                     rng: np.random.Generator) -> list[np.ndarray]:
    """Same random crop/flip/rot90 on every array (all (H, W, C) of one size).

    Random numbers are always drawn in the same order, whatever the image size, so the
    outcome for a given rng state never depends on which branch ran.
    """
    u_y, u_x, u_h, u_v, u_r = rng.random(5)
    out = list(arrays)
    if patch is not None:
        h, w = out[0].shape[:2]
        ph, pw = max(0, patch - h), max(0, patch - w)
        if ph or pw:
            pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
            out = [np.pad(a, pad, mode="symmetric") for a in out]
            h, w = out[0].shape[:2]
        y = int(u_y * (h - patch + 1))
        x = int(u_x * (w - patch + 1))
        out = [a[y:y + patch, x:x + patch] for a in out]
    if augment.hflip and u_h < 0.5:
        out = [a[:, ::-1] for a in out]
    if augment.vflip and u_v < 0.5:
        out = [a[::-1] for a in out]
    if augment.rot90 and u_r < 0.5:
        out = [a.transpose(1, 0, 2) for a in out]
    return out


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16/float -> float32 CHW tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float(arr).transpose(2, 0, 1)))


# --------------------------------------------------------------------------------------------
# video frame access shared by VideoFrames and UnpairedFolder
# --------------------------------------------------------------------------------------------


class _VideoStore:
    """Per-process access to chosen frames of video files.

    A video whose sampled frames fit in ``cache_bytes`` is decoded once, sequentially, on first
    use (fast and exact). Larger ones are read per frame by seeking, which is slower but
    bounded in memory. Nothing here is pickled: DataLoader workers build their own.
    """

    def __init__(self, wanted: dict[Path, list[int]], max_side: int | None,
                 cache_bytes: int) -> None:
        self.wanted = wanted
        self.max_side = max_side
        self.cache_bytes = cache_bytes
        self._frames: dict[Path, dict[int, np.ndarray]] = {}
        self._uncached: set[Path] = set()
        self._caps: OrderedDict[Path, cv2.VideoCapture] = OrderedDict()
        self._used = 0

    def get(self, path: Path, frame: int) -> np.ndarray:
        if path not in self._frames and path not in self._uncached and self._fits(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the dataset warns per bad frame instead
                frames = {}
                try:
                    for i, f in iter_indexed_frames(path, max_side=self.max_side, as_uint8=True,
                                                    indices=self.wanted[path]):
                        frames[i] = f
                except ImageReadError:
                    pass
            self._frames[path] = frames
            self._used += sum(f.nbytes for f in frames.values())
        if path in self._frames:
            if frame not in self._frames[path]:
                raise ImageReadError(path, f"frame {frame} could not be decoded", "video")
            return self._frames[path][frame]
        return self._seek(path, frame)

    def _fits(self, path: Path) -> bool:
        cap = open_video(path)
        try:
            w = cap.get(cv2.CAP_PROP_FRAME_WIDTH)
            h = cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        finally:
            cap.release()
        if self.max_side is not None and max(w, h) > self.max_side:
            s = self.max_side / max(w, h)
            w, h = w * s, h * s
        need = w * h * 3 * len(self.wanted[path])
        if self._used + need > self.cache_bytes:
            self._uncached.add(path)
            return False
        return True

    def _seek(self, path: Path, frame: int) -> np.ndarray:
        cap = self._caps.pop(path, None) or open_video(path)
        self._caps[path] = cap
        while len(self._caps) > 4:
            self._caps.popitem(last=False)[1].release()
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            ok, bgr = cap.read()
        except cv2.error:
            ok, bgr = False, None
        if not ok or bgr is None:
            raise ImageReadError(path, f"frame {frame} could not be decoded", "video")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if self.max_side is not None and max(rgb.shape[:2]) > self.max_side:
            s = self.max_side / max(rgb.shape[:2])
            rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * s)),
                                   max(1, round(rgb.shape[0] * s))), interpolation=cv2.INTER_AREA)
        return rgb


def _video_frame_indices(path: Path, stride: int, max_frames: int | None) -> list[int]:
    """Frame indices to use, from the container's count (decoding to count if it has none)."""
    cap = open_video(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
        elif not cap.grab():
            n = 0
    finally:
        cap.release()
    if n <= 0:
        raise ImageReadError(path, "video has no decodable frames", "video")
    idx = list(range(0, n, stride))
    if max_frames is not None and len(idx) > max_frames:  # spread over the whole clip
        idx = sorted(set(np.linspace(0, n - 1, max_frames).round().astype(int).tolist()))
    return idx


# --------------------------------------------------------------------------------------------
# robust base
# --------------------------------------------------------------------------------------------


class _RobustDataset(Dataset):
    """Skip-and-replace machinery, epoch-seeded augmentation and shared bookkeeping."""

    def __init__(self, refs: list[_Ref], probe_skipped: list[str], patch: int | None,
                 augment: bool | Augment, seed: int, what: str) -> None:
        if patch is not None and patch < 1:
            raise ValueError(f"patch must be a positive int or None, got {patch}")
        if not refs:
            listed = "; ".join(probe_skipped[:3])
            raise DataError(f"no readable {what}: all {len(probe_skipped)} files failed "
                            f"(e.g. {listed})")
        self.refs = refs
        self.patch = patch
        self.augment = _as_augment(augment)
        self.seed = int(seed)
        self._what = what
        self._probe_skipped = list(probe_skipped)
        # Shared memory: DataLoader workers (forked or spawned) write, the main process reads.
        self._bad = torch.zeros(len(refs), dtype=torch.uint8).share_memory_()
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    # -- public bookkeeping --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.refs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops/flips ``__getitem__`` returns (shared with workers)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @property
    def skipped(self) -> list[str]:
        """Files (or ``video#frame``) skipped so far, in this process and its workers."""
        bad = torch.nonzero(self._bad).flatten().tolist()
        return self._probe_skipped + [self.refs[i].label for i in bad]

    @property
    def total(self) -> int:
        return len(self.refs) + len(self._probe_skipped)

    def summary(self) -> str:
        """One line, e.g. ``skipped 3 of 120 items: a.jpg, b.png, c.mp4#30``."""
        skipped = self.skipped
        if not skipped:
            return f"skipped 0 of {self.total} {self._what}"
        names = ", ".join(Path(s).name for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        return f"skipped {len(skipped)} of {self.total} {self._what}: {names}{more}"

    # -- item access -------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        n = len(self.refs)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index %= n
        rng = item_rng(self.seed, self.epoch, index)
        for step in range(n):
            j = (index + step) % n
            if self._bad[j]:
                continue
            try:
                arrays = self._load(self.refs[j])
            except ImageReadError as exc:
                self._mark_bad(j, str(exc))
                continue
            arrays = crop_and_augment(arrays, self.patch, self.augment, rng)
            return self._item(self.refs[j], [to_tensor(a) for a in arrays])
        raise DataError(f"every one of the {n} {self._what} failed to load: "
                        f"{self.summary()}")

    def _mark_bad(self, j: int, reason: str) -> None:
        if not self._bad[j]:
            self._bad[j] = 1
            warnings.warn(f"skipping {self.refs[j].label}: {reason}; a replacement item is "
                          "used (see dataset.summary())", stacklevel=3)

    def _load(self, ref: _Ref) -> list[np.ndarray]:
        raise NotImplementedError

    def _item(self, ref: _Ref, tensors: list[torch.Tensor]) -> dict:
        raise NotImplementedError


def _probe_images(paths: list[Path], probe: bool) -> tuple[list[Path], list[str]]:
    """Header check of every file (cheap); bad ones are warned about once and set aside."""
    if not probe:
        return paths, []
    good, bad = [], []
    for p in paths:
        try:
            image_size(p)
        except ImageReadError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=3)
            bad.append(str(p))
            continue
        good.append(p)
    return good, bad


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _keyed(paths: list[Path], root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in paths:
        k = _key(p, root)
        if k in out:
            raise DataError(f"{root} has two images named {k!r} ({out[k].name} and {p.name}); "
                            "keep one so pairs are unambiguous")
        out[k] = p
    return out


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


class PairedFolder(_RobustDataset):
    """Aligned (degraded, clean) pairs from two folders, matched by file stem.

    Items: ``dict(lq=Tensor[3,P,P], gt=Tensor[3,P,P], name=str)``. Both images get the same
    crop and flips. A pair whose sizes differ is skipped with a warning. Stems present in only
    one folder are reported in one warning; no matching stem at all is a :class:`DataError`.
    """

    def __init__(self, lq_dir: str | os.PathLike, gt_dir: str | os.PathLike,
                 patch: int | None = 256, augment: bool | Augment = True, seed: int = 0,
                 recursive: bool = False, max_side: int | None = 4096,
                 probe: bool = True) -> None:
        lq_dir, gt_dir = Path(lq_dir), Path(gt_dir)
        self.max_side = max_side
        lq = _keyed(list_files(lq_dir, IMAGE_EXTS, recursive, "LQ images"), lq_dir)
        gt = _keyed(list_files(gt_dir, IMAGE_EXTS, recursive, "GT images"), gt_dir)
        common = sorted(lq.keys() & gt.keys())
        only_lq, only_gt = sorted(lq.keys() - gt.keys()), sorted(gt.keys() - lq.keys())
        if not common:
            raise DataError(
                f"no image in {lq_dir} ({len(lq)} files) has a same-named partner in {gt_dir} "
                f"({len(gt)} files): all {len(only_lq) + len(only_gt)} names mismatch, e.g. "
                f"LQ {next(iter(lq.values())).name!r} vs GT {next(iter(gt.values())).name!r}; "
                "pairs are matched by file name without suffix")
        if only_lq or only_gt:
            ex = (f"LQ {only_lq[0]!r} has no GT" if only_lq else f"GT {only_gt[0]!r} has no LQ")
            warnings.warn(f"{len(only_lq)} LQ and {len(only_gt)} GT images in {lq_dir} / "
                          f"{gt_dir} have no partner and are ignored (e.g. {ex})", stacklevel=2)
        refs, bad = [], []
        for k in common:
            pair_bad = self._probe_pair(lq[k], gt[k]) if probe else None
            if pair_bad:
                warnings.warn(f"skipping pair {k!r}: {pair_bad}", stacklevel=2)
                bad.append(str(lq[k]))
                continue
            refs.append(_Ref(path=lq[k], name=k, partner=gt[k]))
        super().__init__(refs, bad, patch, augment, seed, "pairs")

    @staticmethod
    def _probe_pair(lq: Path, gt: Path) -> str | None:
        try:
            s_lq, s_gt = image_size(lq), image_size(gt)
        except ImageReadError as exc:
            return str(exc)
        if s_lq != s_gt:
            return f"sizes differ (LQ {s_lq[1]}x{s_lq[0]}, GT {s_gt[1]}x{s_gt[0]})"
        return None

    def _load(self, ref: _Ref) -> list[np.ndarray]:
        assert ref.partner is not None
        lq = read_image_raw(ref.path, self.max_side)
        gt = read_image_raw(ref.partner, self.max_side)
        if lq.shape != gt.shape:
            raise ImageReadError(ref.path, f"size {lq.shape[1]}x{lq.shape[0]} differs from "
                                           f"its GT {ref.partner.name} "
                                           f"({gt.shape[1]}x{gt.shape[0]})")
        return [lq, gt]

    def _item(self, ref: _Ref, tensors: list[torch.Tensor]) -> dict:
        return {"lq": tensors[0], "gt": tensors[1], "name": ref.name}


class _FrameSource(_RobustDataset):
    """Shared loading for datasets whose items may be video frames."""

    def _setup_video(self, wanted: dict[Path, list[int]], max_side: int | None,
                     cache_mb: float) -> None:
        self._wanted = wanted
        self.max_side = max_side
        self._cache_bytes = int(cache_mb * 2**20)
        self._store: _VideoStore | None = None
        self._store_pid = -1

    def _frame(self, ref: _Ref) -> np.ndarray:
        if self._store is None or self._store_pid != os.getpid():
            self._store = _VideoStore(self._wanted, self.max_side, self._cache_bytes)
            self._store_pid = os.getpid()
        assert ref.frame is not None
        return self._store.get(ref.path, ref.frame)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_store"], state["_store_pid"] = None, -1  # captures and caches stay per-process
        return state


class UnpairedFolder(_FrameSource):
    """Unlabelled real images -- and frames of any videos dropped into the same folder.

    Items: ``dict(img=Tensor[3,P,P], name=str)``; video frames are named ``<stem>#<frame>``.
    Every ``video_stride``-th frame of each video is an item (at most ``max_video_frames``
    per video, spread over the clip).
    """

    def __init__(self, folder: str | os.PathLike, patch: int | None = 256,
                 augment: bool | Augment = True, seed: int = 0, recursive: bool = False,
                 video_stride: int = 30, max_video_frames: int | None = 300,
                 max_side: int | None = 4096, probe: bool = True,
                 video_cache_mb: float = 512) -> None:
        folder = Path(folder)
        paths = list_files(folder, IMAGE_EXTS + VIDEO_EXTS, recursive, "images or videos")
        images = [p for p in paths if p.suffix.lower() in IMAGE_EXTS]
        videos = [p for p in paths if p.suffix.lower() in VIDEO_EXTS]
        images, bad = _probe_images(images, probe)
        refs = [_Ref(path=p, name=_key(p, folder)) for p in images]
        wanted: dict[Path, list[int]] = {}
        for v in videos:
            try:
                idx = _video_frame_indices(v, video_stride, max_video_frames)
            except ImageReadError as exc:
                warnings.warn(f"skipping {exc}", stacklevel=2)
                bad.append(str(v))
                continue
            wanted[v] = idx
            refs += [_Ref(path=v, name=f"{_key(v, folder)}#{i}", frame=i) for i in idx]
        super().__init__(refs, bad, patch, augment, seed, "items")
        self._setup_video(wanted, max_side, video_cache_mb)

    def _load(self, ref: _Ref) -> list[np.ndarray]:
        if ref.frame is not None:
            return [self._frame(ref)]
        return [read_image_raw(ref.path, self.max_side)]

    def _item(self, ref: _Ref, tensors: list[torch.Tensor]) -> dict:
        return {"img": tensors[0], "name": ref.name}


class VideoFrames(_FrameSource):
    """Frames of one video file as items: ``dict(img=Tensor, name=str, frame=int)``.

    Every ``stride``-th frame (at most ``max_frames``, spread over the clip). Sampled frames
    are decoded once per process into memory when they fit in ``cache_mb``; otherwise each
    item seeks (slower, bounded memory). An unreadable video is a :class:`DataError`.
    """

    def __init__(self, path: str | os.PathLike, patch: int | None = 256, stride: int = 1,
                 augment: bool | Augment = False, seed: int = 0, max_frames: int | None = None,
                 max_side: int | None = None, cache_mb: float = 512) -> None:
        path = Path(path)
        if not path.exists():
            raise MissingDataError(f"video {path} does not exist; check the path")
        try:
            idx = _video_frame_indices(path, stride, max_frames)
        except ImageReadError as exc:
            raise DataError(f"{exc}; pass a video OpenCV can decode") from None
        refs = [_Ref(path=path, name=f"{path.stem}#{i}", frame=i) for i in idx]
        super().__init__(refs, [], patch, augment, seed, "frames")
        self._setup_video({path: idx}, max_side, cache_mb)

    def _load(self, ref: _Ref) -> list[np.ndarray]:
        return [self._frame(ref)]

    def _item(self, ref: _Ref, tensors: list[torch.Tensor]) -> dict:
        return {"img": tensors[0], "name": ref.name, "frame": ref.frame}
