"""qt-train: learn the quality-conditioned student (stage 1 base model, stage 2 method).

  qt-train --config configs/dehaze.yaml
  qt-train --config configs/dehaze.yaml --set data.real=/footage/frames --set train.method=mean_teacher
  qt-train --config configs/dehaze.yaml --resume
  qt-train --config configs/dehaze.yaml --set train.init=zoo:dehaze    # fine-tune a model of the zoo
  torchrun --nproc_per_node 2 -m qt_train.train.cli --config configs/dehaze.yaml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qt_core.cli import OneLineParser, add_config_args, run_main

PROG = "qt-train"


def _body(argv: Sequence[str] | None) -> int:
    import dataclasses

    from qt_core.quiet import quiet_libraries
    from qt_core.zoo import is_zoo_name, resolve_checkpoint
    from qt_train.schema import load_run_config
    from qt_train.train.loop import train

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--run-dir", type=Path, help="run folder (default: OUT/TASK-METHOD from the config)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from last.ckpt")
    parser.add_argument("--resume-override", action="store_true",
                        help="with --resume: continue even though the config differs from the checkpoint's")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to the run folder)")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    args = parser.parse_args(argv)
    quiet_libraries(args.verbose)
    if args.config is None:
        raise ValueError("--config is required, e.g. --config configs/dehaze.yaml")
    cfg = load_run_config(args.config, args.overrides)
    if is_zoo_name(cfg.train.init):  # train.init=zoo:TASK: the zoo's checkpoint, hash-checked
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init=str(resolve_checkpoint(cfg.train.init))))
    run_dir = args.run_dir or Path(cfg.out) / f"{cfg.task}-{cfg.train.method}"
    if args.resume_override and not args.resume:
        raise ValueError("--resume-override only applies with --resume")
    last = train(cfg, run_dir, resume=args.resume, argv=[PROG, *argv], source=args.config,
                 progress=not args.no_progress, resume_override=args.resume_override)
    print(f"done: {last}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
