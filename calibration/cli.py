"""qt-calibrate: fit the offline IQA members (INT8 calibration frames are picked by qt-export,
with calibration/frames.py).

  qt-calibrate iqa --out DIR            # NIQE pristine model + the learned CNNIQA member
  qt-calibrate iqa --out DIR --only niqe

The files committed in qt_train/iqa/assets/ were made by `qt-calibrate iqa --out qt_train/iqa/assets`
(about 7 minutes on 2 CPU cores; the JSON beside each file records its provenance).
Point an ensemble at another folder with QT_IQA_WEIGHTS=DIR.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qt_core.cli import OneLineParser, run_main

PROG = "qt-calibrate"


def _iqa(args: argparse.Namespace) -> int:
    from calibration import niqe_fit, rank_fit

    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "niqe"):
        code = niqe_fit.main(["--out", str(args.out / "niqe_pristine.mat")])
        if code:
            return code
    if args.only in (None, "cnniqa"):
        extra = ["--threads", str(args.threads)] if args.threads else []
        extra += ["--seed", str(args.seed)] if args.seed is not None else []
        return rank_fit.main(["--out", str(args.out / "cnniqa_rank.pth"), *extra])
    return 0


def _body(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    iqa = sub.add_parser("iqa", help="fit the offline IQA members into --out")
    iqa.add_argument("--out", type=Path, required=True, help="folder for niqe_pristine.mat and cnniqa_rank.pth")
    iqa.add_argument("--only", choices=("niqe", "cnniqa"), help="fit one member only")
    iqa.add_argument("--seed", type=int, default=None,
                     help="seed of the CNNIQA fit (default: the fit's own, rank_fit.FitOptions.seed)")
    iqa.add_argument("--threads", type=int, default=None, help="torch CPU threads for the CNNIQA fit")
    args = parser.parse_args(argv)
    return _iqa(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
