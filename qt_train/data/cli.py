"""qt-data: synthesise paired degraded/clean sets and preview the degradation engine.

  qt-data make --task dehaze --domain realistic --n 200 --out DIR
  qt-data preview --out DIR
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qt_core.cli import OneLineParser, add_config_args, run_main

PROG = "qt-data"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    make = sub.add_parser("make", help="write a paired set: DIR/lq, DIR/gt, DIR/manifest.json")
    make.add_argument("--task", help="dehaze | derain | desnow | lowlight | underwater (or from --config)")
    make.add_argument("--domain", default="synthetic", help="synthetic (training distribution) | realistic (shifted)")
    make.add_argument("--n", type=int, default=None, help="number of pairs (default: data.n_train of the config)")
    make.add_argument("--out", required=True, type=Path, help="output folder (must not exist unless --force)")
    make.add_argument("--size", type=int, default=None, help="side of the square images (default: data.size)")
    make.add_argument("--seed", type=int, default=None, help="random seed (default: the config's seed)")
    make.add_argument("--clean", default=None, help="clean source: mixed | dead_leaves | package_photos | folder")
    make.add_argument("--clean-folder", type=Path, default=None, help="folder of your own clean images (--clean folder)")
    make.add_argument("--force", action="store_true", help="replace an existing --out once the new set is complete")
    add_config_args(make)

    preview = sub.add_parser("preview", help="write one PNG grid per task x domain")
    preview.add_argument("--out", required=True, type=Path, help="folder for the PNG grids")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--rows", type=int, default=3, help="clean images per grid")
    preview.add_argument("--size", type=int, default=192)
    preview.add_argument("--clean", default="package_photos", help="clean source (see make --clean)")
    return parser


def _make(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from qt_train.data.make import make_paired_set
    from qt_train.schema import degradation_params, load_run_config

    cfg = load_run_config(args.config, args.overrides, task=args.task)
    clean = args.clean or cfg.data.clean
    clean_folder = args.clean_folder or cfg.data.clean_folder
    if clean == "folder" and clean_folder is None:
        raise ValueError("--clean folder needs --clean-folder DIR (a folder of your clean images)")
    out = make_paired_set(
        args.out,
        task=cfg.task,
        domain=args.domain,
        n=args.n if args.n is not None else cfg.data.n_train,
        seed=args.seed if args.seed is not None else cfg.seed,
        size=args.size or cfg.data.size,
        clean=clean,
        clean_folder=clean_folder,
        params=degradation_params(cfg, source=args.config or "<defaults>"),
        force=args.force,
        argv=[PROG, *argv],
        config=cfg,
    )
    print(f"wrote {out}/lq, {out}/gt and {out}/manifest.json")
    return 0


def _preview(args: argparse.Namespace) -> int:
    import numpy as np

    from qt_train.data.clean import sample_clean
    from qt_train.data.preview import write_previews

    clean = sample_clean(args.clean, args.rows, args.size, np.random.default_rng(args.seed))
    paths = write_previews(clean, args.out, seed=args.seed)
    print(f"wrote {len(paths)} preview grids to {args.out}")
    return 0


def _body(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "make":
        return _make(args, argv)
    return _preview(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
