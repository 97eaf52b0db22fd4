"""qt-iqa: score images and videos with the IQA ensemble; fetch member weights on request.

  qt-iqa score PATH... [--ensemble CFG.yaml] [--json] [--weights DIR] [--batch 8]
                       [--video-stride N] [--max-frames N] [--size S] [--device DEV]
  qt-iqa fetch --to DIR [--ensemble CFG.yaml] [--base-url URL] [--force] [--dry-run]

--ensemble takes a YAML spec file, or a preset: `default` (offline NIQE + PIQE + the learned
CNNIQA) / `reference` (the paper's MUSIQ + CLIP-IQA + BRISQUE mix, needs fetched weights) /
`judge` (published NIQE + LIVE-trained BRISQUE). Scoring never downloads;
after `qt-iqa fetch --to DIR`, set QT_IQA_WEIGHTS=DIR (or pass --weights DIR).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qt_core.cli import OneLineParser, run_main

if TYPE_CHECKING:
    import numpy as np

    from .ensemble import Ensemble
    from .spec import EnsembleSpec

PROG = "qt-iqa"


# --------------------------------------------------------------------------- arguments


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    from .fetch import TIMEOUT_S

    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ens_help = "ensemble spec YAML, or a preset: default / reference / judge (default: default)"

    score = sub.add_parser("score", help="score images, folders (recursive) and videos")
    score.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image, video or folder")
    score.add_argument("--ensemble", default="default", help=ens_help)
    score.add_argument("--json", action="store_true", help="print one JSON document (items + summary)")
    score.add_argument("--weights", type=Path, default=None, help="folder searched first for member weights")
    score.add_argument("--batch", type=_positive, default=8, help="images per ensemble call (default 8)")
    score.add_argument("--video-stride", type=_positive, default=30, help="score every N-th video frame (default 30)")
    score.add_argument("--max-frames", type=_positive, default=None, help="at most N frames per video")
    score.add_argument(
        "--size", type=_positive, default=None,
        help="resize the shorter side to S and centre-crop S x S, so every item batches together "
             "(default: native resolution, images of equal size batched together)",
    )
    score.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")

    fetch = sub.add_parser("fetch", help="download the weights files the ensemble's members need")
    fetch.add_argument("--ensemble", default="default", help=ens_help)
    fetch.add_argument("--to", required=True, type=Path, metavar="DIR", help="folder to put the files in")
    fetch.add_argument("--base-url", default=None, help="mirror: file URL = BASE_URL/<file name>")
    fetch.add_argument("--force", action="store_true", help="download again even if a verified file exists")
    fetch.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds without data before giving up")
    fetch.add_argument("--no-hash-check", action="store_true", help="skip the SHA-256 checks named by the sources")
    fetch.add_argument("--dry-run", action="store_true", help="print what would be fetched, touch nothing")
    return parser


def build_ensemble(spec: EnsembleSpec, weights: Path | None, device: str | None) -> Ensemble:
    """Build the ensemble offline; an import failure inside pyiqa becomes a one-line user error."""
    from .ensemble import Ensemble

    try:
        return Ensemble(spec, device=device, weights_dir=weights)
    except ImportError as exc:
        hint = ""
        if "pkg_resources" in str(exc):
            hint = "; pyiqa's CLIP metrics import OpenAI's clip package, which needs pkg_resources (setuptools<81)"
        raise ValueError(f"cannot build the IQA ensemble ({', '.join(spec.names)}): {exc}{hint}") from exc


# --------------------------------------------------------------------------- inputs


@dataclass
class Item:
    """One scored unit: an image file or one video frame."""

    index: int
    path: Path
    frame: int | None
    image: np.ndarray | None = None  # float32 RGB (H, W, 3); dropped once scored
    size: tuple[int, int] = (0, 0)  # (H, W) as scored

    @property
    def label(self) -> str:
        return str(self.path) if self.frame is None else f"{self.path}#{self.frame}"


@dataclass
class Tally:
    """Skipped inputs (one warning each) and the count of scored items."""

    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})
        print(f"{PROG}: warning: skipped {path}: {reason}", file=sys.stderr)


def expand_paths(paths: Sequence[Path], tally: Tally) -> list[Path]:
    """Files to score: given files as they are, folders searched recursively (sorted)."""
    from qt_train.data.io import IMAGE_EXTS, VIDEO_EXTS, DataError, list_files

    out: list[Path] = []
    for p in paths:
        p = p.expanduser()
        if p.is_dir():
            try:
                out.extend(list_files(p, IMAGE_EXTS + VIDEO_EXTS, recursive=True, what="images or videos"))
            except DataError as exc:
                tally.skip(p, str(exc))
        elif p.exists():
            out.append(p)
        else:
            tally.skip(p, "no such file or folder")
    return out


def _fit(img: np.ndarray, size: int | None) -> np.ndarray:
    """Shorter side to ``size`` (area/linear resampling) and a centred square crop."""
    if size is None:
        return img
    import cv2
    import numpy as np

    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def iter_items(files: Sequence[Path], args: argparse.Namespace, tally: Tally) -> Iterator[Item]:
    """Decoded images and sampled video frames; unreadable files are skipped with a warning."""
    from qt_train.data.io import VIDEO_EXTS, ImageReadError, read_image
    from qt_train.data.video import iter_indexed_frames

    index = 0
    for path in files:
        if path.suffix.lower() in VIDEO_EXTS:
            try:  # a video cut short warns (qt_train.data.video) and keeps the frames it gave
                for frame_no, frame in iter_indexed_frames(path, args.video_stride, args.max_frames):
                    yield _item(index, path, frame_no, frame, args.size)
                    index += 1
            except ImageReadError as exc:
                tally.skip(path, exc.reason)
            continue
        try:
            img = read_image(path)
        except ImageReadError as exc:
            tally.skip(path, exc.reason)
            continue
        yield _item(index, path, None, img, args.size)
        index += 1


def _item(index: int, path: Path, frame: int | None, img: np.ndarray, size: int | None) -> Item:
    img = _fit(img, size)
    return Item(index, path, frame, img, (int(img.shape[0]), int(img.shape[1])))


def too_small(h: int, w: int, spec: EnsembleSpec) -> str | None:
    """Why an image cannot be scored by some member (its min_size), or None."""
    for m in sorted(spec.members, key=lambda m: -m.min_size):
        if min(h, w) < m.min_size:
            return f"{h}x{w} is smaller than IQA member {m.name!r} accepts: both sides must be >= {m.min_size} px"
    return None


def estimate_total(files: Sequence[Path], args: argparse.Namespace) -> int | None:
    """Items the progress bar expects (video frame counts from the container; None if unknown)."""
    from qt_train.data.io import VIDEO_EXTS, ImageReadError
    from qt_train.data.video import count_frames

    total = 0
    for p in files:
        if p.suffix.lower() not in VIDEO_EXTS:
            total += 1
            continue
        try:
            n = math.ceil(count_frames(p) / args.video_stride)
        except ImageReadError:
            continue
        total += n if args.max_frames is None else min(n, args.max_frames)
    return total


# --------------------------------------------------------------------------- scoring


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def score_batch(ens: Ensemble, batch: list[Item]) -> list[dict[str, Any]]:
    """Score items of one size in one ensemble call; one record per item."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.stack([it.image for it in batch]).transpose(0, 3, 1, 2).copy())
    s = ens.score(x)
    records = []
    for j, it in enumerate(batch):
        records.append({
            "path": str(it.path),
            "frame": it.frame,
            "size": list(it.size),
            "raw": {n: _finite(float(s.raw[n][j])) for n in ens.spec.names},
            "norm": {n: float(s.norm[n][j]) for n in ens.spec.names},
            "combined": float(s.combined[j]),
            "level": int(s.level[j]),
        })
        it.image = None
    return records


class Batcher:
    """Groups items by size and scores a group once it holds ``batch`` items.

    Why group by size: one call per batch is what makes scoring fast, and a batch needs equal
    sizes. Pending items are bounded: beyond ``4 * batch`` the largest group is scored early.
    """

    def __init__(self, ens: Ensemble, batch: int, progress: Any) -> None:
        self.ens, self.batch, self.progress = ens, batch, progress
        self.groups: dict[tuple[int, int], list[Item]] = {}
        self.records: list[tuple[int, dict[str, Any]]] = []

    def add(self, item: Item) -> None:
        group = self.groups.setdefault(item.size, [])
        group.append(item)
        if len(group) >= self.batch:
            self._flush(item.size)
        elif sum(len(g) for g in self.groups.values()) > 4 * self.batch:
            self._flush(max(self.groups, key=lambda k: len(self.groups[k])))

    def _flush(self, key: tuple[int, int]) -> None:
        items = self.groups.pop(key, [])
        if items:
            recs = score_batch(self.ens, items)
            self.records.extend((it.index, r) for it, r in zip(items, recs, strict=True))
            self.progress.update(len(items))

    def finish(self) -> list[dict[str, Any]]:
        for key in list(self.groups):
            self._flush(key)
        return [r for _, r in sorted(self.records, key=lambda t: t[0])]


def summarise(records: list[dict[str, Any]], spec: EnsembleSpec, tally: Tally) -> dict[str, Any]:
    """Counts, level histogram and means over the scored items."""
    from .mapping import member_weights

    hist = [0] * spec.levels
    for r in records:
        hist[r["level"]] += 1
    n = len(records)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "ensemble": {"members": member_weights(spec), "levels": spec.levels},
        "scored": n,
        "skipped": len(tally.skipped),
        "skipped_files": tally.skipped,
        "level_histogram": hist,
        "combined_mean": mean([r["combined"] for r in records]),
        "norm_mean": {m: mean([r["norm"][m] for r in records]) for m in spec.names},
    }


def format_table(records: list[dict[str, Any]], summary: dict[str, Any], spec: EnsembleSpec) -> str:
    """Readable table: one row per item (raw/normalised per member), then the level histogram."""
    names = spec.names
    label = [r["path"] if r["frame"] is None else f"{r['path']}#{r['frame']}" for r in records]
    width = max([4, *map(len, label)])
    head = f"{'item':<{width}}  " + "  ".join(f"{n + ' raw/norm':>18}" for n in names) + "  combined  level"
    lines = [head, "-" * len(head)]
    for lab, r in zip(label, records, strict=True):
        cells = []
        for n in names:
            raw = r["raw"][n]
            raw_txt = "nan" if raw is None else f"{raw:.3f}"
            cells.append(f"{raw_txt + ' / ' + format(r['norm'][n], '.3f'):>18}")
        lines.append(f"{lab:<{width}}  " + "  ".join(cells) + f"  {r['combined']:8.3f}  {r['level']:5d}")
    lines.append("")
    mean = summary["combined_mean"]
    lines.append(
        f"scored {summary['scored']}, skipped {summary['skipped']}"
        + ("" if mean is None else f", mean combined {mean:.3f}")
    )
    top = max(summary["level_histogram"]) or 1
    for level, count in enumerate(summary["level_histogram"]):
        lines.append(f"level {level}: {count:5d} {'#' * round(40 * count / top)}")
    return "\n".join(lines)


def _score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .spec import load_spec

    spec = load_spec(args.ensemble)
    if args.size is not None:
        small = too_small(args.size, args.size, spec)
        if small:
            raise ValueError(f"--size {args.size}: {small}")
    tally = Tally()
    files = expand_paths(args.paths, tally)
    ens = build_ensemble(spec, args.weights, args.device) if files else None
    records: list[dict[str, Any]] = []
    if ens is not None:
        with tqdm(total=estimate_total(files, args), desc="scoring", unit="img", file=sys.stderr,
                  disable=None) as bar:
            batcher = Batcher(ens, args.batch, bar)
            for item in iter_items(files, args, tally):
                small = too_small(*item.size, spec)
                if small:
                    tally.skip(item.label, small)
                    continue
                batcher.add(item)
            records = batcher.finish()
    if not records:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in tally.skipped[:3])
        raise ValueError(f"no readable input to score{(' (' + reasons + ')') if reasons else ''}")
    summary = summarise(records, spec, tally)
    if args.json:
        json.dump({"items": records, "summary": summary}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(records, summary, spec))
    return 0


# --------------------------------------------------------------------------- fetch


def _fetch(args: argparse.Namespace) -> int:
    import dataclasses

    from . import fetch as fx
    from .spec import load_spec
    from .weights import WEIGHTS_ENV

    spec = load_spec(args.ensemble)
    sources, notes = fx.plan(spec, args.base_url)
    if args.no_hash_check:
        sources = [dataclasses.replace(s, sha256=None, sha256_prefix=None) for s in sources]
    for note in notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    if args.dry_run:
        for s in sources:
            print(f"{s.member}: {s.file} <- {s.url or s.local}")
        return 0
    results = fx.fetch(sources, args.to, force=args.force, timeout=args.timeout)
    failed = 0
    for r in results:
        if r.status == "failed":
            failed += 1
            print(f"{PROG}: error: {r.message}", file=sys.stderr)
        else:
            print(f"{r.status:>10}  {r.source.member}: {r.path}")
    if failed:
        print(f"{PROG}: {failed} of {len(results)} files failed; run again to retry them", file=sys.stderr)
        return 1
    print(f"all {len(results)} weights files are in {args.to}; score offline with {WEIGHTS_ENV}={args.to}")
    return 0


def _body(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "score":
        return _score(args)
    return _fetch(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``qt-iqa``): user errors print one line and exit with status 2."""
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
