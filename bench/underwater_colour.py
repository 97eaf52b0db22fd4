"""Colour statistics of underwater images: real photos against the degradation engine's output.

Mean R, G, B of each whole image, then the 10/50/90% quantiles of R/G and B/G over the images —
the statistics that showed the engine far more red-starved than real water (docs/results.md).

  python bench/underwater_colour.py            # ../shared/data/real-train/underwater vs 64 engine images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from claim import REPO, SHARED


def stats(images: list[np.ndarray]) -> str:
    m = np.array([im.reshape(-1, 3).mean(0) for im in images])
    rg, bg = m[:, 0] / m[:, 1], m[:, 2] / m[:, 1]
    q = (10, 50, 90)
    def r(v: np.ndarray) -> str:
        return ", ".join(f"{float(x):.2f}" for x in v)

    return f"mean RGB {r(m.mean(0))} | R/G {r(np.percentile(rg, q))} | B/G {r(np.percentile(bg, q))}"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from qt_train.data.clean import sample_clean
    from qt_train.data.degrade import degrade
    from qt_train.data.io import IMAGE_EXTS, list_files, read_image

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=SHARED / "real-train" / "underwater")
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args(argv)
    if args.photos.is_dir():
        photos = [read_image(f, max_side=256) for f in list_files(args.photos, IMAGE_EXTS)]
        print(f"photos ({len(photos)}, {args.photos}): {stats(photos)}")
    clean = sample_clean("mixed", args.n, 128, np.random.default_rng(0), split="train")
    rng = np.random.default_rng(1)
    for domain in ("synthetic", "realistic"):
        lq, _ = degrade("underwater", domain, clean, rng)
        print(f"engine {domain} ({args.n}): {stats(list(lq))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
