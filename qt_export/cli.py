"""qt-export: a qt-train checkpoint -> a verified, gated artifact folder (docs/artifact.md).

  qt-export runs/dehaze/last.ckpt --target cpu                       # OpenVINO FP32 IR
  qt-export runs/dehaze/last.ckpt --target cpu --int8 --calib clip.mp4 [--qat]
  qt-export runs/dehaze/last.ckpt --target jetson --int8 --calib clip.mp4   # Q/DQ ONNX for TensorRT
  qt-export runs/dehaze/last.ckpt --target desktop-gpu --quality-input --dynamic
  qt-export zoo:dehaze --target jetson --int8 --calib clip.mp4 --out dehaze-jetson  # a model of the zoo

Defaults per target: cpu -> OpenVINO IR; jetson/desktop-gpu -> TensorRT-ready ONNX (onnx_qdq with
--int8; FP16 is decided when the engine is built on the device). The export fails (exit 2,
nothing written) unless the artifact, run through qt_runtime, stays within --min-psnr and
--max-score-drop of the FP32 PyTorch model on held-out frames.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from qt_core.cli import OneLineParser, field_defaults, run_main

from .formats import CLI_FORMATS, TARGETS
from .gate import GateBounds

PROG = "qt-export"


#: Largest side an export is traced and gated at (8K): --size 100000 allocated until it crashed.
MAX_EXPORT_SIDE = 8192


def parse_size(text: str) -> tuple[int, int]:
    """``640x360`` (W x H, as video people say it) -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 640x360 (width x height), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"--size must be positive, got {text!r}")
    if max(w, h) > MAX_EXPORT_SIDE:
        raise argparse.ArgumentTypeError(f"--size {text} is larger than {MAX_EXPORT_SIDE} px a side; export at "
                                         "the camera's size (or --dynamic) instead")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    from .export import ExportOptions
    from .quantize import KEEP_FP_ROLES, QATOptions

    # The defaults live in the option dataclasses (ExportOptions, QATOptions, GateBounds).
    dflt, qat, gate = field_defaults(ExportOptions), QATOptions(), GateBounds()
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a .ckpt written by qt-train (EMA weights are exported), or a zoo "
                                                 "model: zoo:TASK")
    p.add_argument("--target", choices=TARGETS, required=True)
    p.add_argument("--format", choices=CLI_FORMATS, help="default: openvino for cpu, TensorRT-ready ONNX for GPUs")
    p.add_argument("--int8", action="store_true", help="NNCF post-training INT8 (needs --calib)")
    p.add_argument("--qat", action="store_true", help="also fine-tune the INT8 model; ship the better of PTQ/QAT")
    p.add_argument("--qat-steps", type=int, default=qat.steps)
    p.add_argument("--qat-lr", type=float, default=qat.lr)
    p.add_argument("--qat-consistency", type=float, default=qat.consistency_weight,
                   help="weight of the cropped-consistency loss")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--quality", type=float, default=None,
                   help="fold this level into the graph (default: the run's top level, method.top_level)")
    q.add_argument("--quality-input", action="store_true", help="keep the level as a float input 'quality'")
    p.add_argument("--calib", type=Path, action="append", default=[],
                   help="calibration video, image folder or image (repeatable)")
    p.add_argument("--calib-frames", type=int, default=dflt.calib_frames)
    p.add_argument("--no-calib-iqa", action="store_true", help="skip IQA stratification of calibration frames")
    p.add_argument("--cache-dir", type=Path, help="cache selected calibration frames here")
    p.add_argument("--size", type=parse_size, default=dflt.size,
                   help=f"input WxH (default {dflt.size[1]}x{dflt.size[0]}); with --dynamic, the size of "
                        "calibration/gate frames")
    p.add_argument("--dynamic", action="store_true",
                   help="accept any input size (qt-run pads frames to the network's multiple)")
    p.add_argument("--keep-fp", default=dflt.keep_fp,
                   help=f"INT8: roles kept in floating point: {','.join(KEEP_FP_ROLES)} or none (default: "
                        "the backbone's own: first,last; edge_guided also guided, its guided-filter maths)")
    p.add_argument("--bias-correction", action="store_true",
                   help="INT8: enable NNCF bias correction (off by default: it lost PSNR in our measurements)")
    p.add_argument("--min-psnr", type=float, default=gate.min_psnr, help="gate: mean PSNR(artifact, FP32) in dB")
    p.add_argument("--min-frame-psnr", type=float, default=gate.min_frame_psnr,
                   help="gate: PSNR(artifact, FP32) of every frame in dB")
    p.add_argument("--max-score-drop", type=float, default=gate.max_score_drop, help="gate: relative IQA score drop")
    p.add_argument("--gate-frames", type=int, default=dflt.gate_frames)
    p.add_argument("--backend", help="qt_runtime backend for the gate (default: the format's)")
    p.add_argument("--seed", type=int, default=dflt.seed)
    p.add_argument("--out", type=Path, help="artifact folder (default: next to the checkpoint)")
    p.add_argument("--force", action="store_true", help="replace an existing --out (only once the new one passed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs (NNCF, OpenVINO)")
    return p


def options_from_args(args: argparse.Namespace):
    from .export import ExportOptions
    from .quantize import QATOptions, parse_keep_fp

    if args.qat_steps < 1:
        raise ValueError("--qat-steps must be >= 1")
    return ExportOptions(
        checkpoint=args.checkpoint, target=args.target, format=args.format, int8=args.int8, qat=args.qat,
        qat_options=QATOptions(steps=args.qat_steps, lr=args.qat_lr, consistency_weight=args.qat_consistency), quality=args.quality,
        quality_input=args.quality_input, calib=tuple(args.calib), calib_frames=args.calib_frames,
        calib_iqa=not args.no_calib_iqa, cache_dir=args.cache_dir, size=args.size, dynamic=args.dynamic,
        out=args.out, force=args.force, keep_fp=None if args.keep_fp is None else parse_keep_fp(args.keep_fp), bias_correction=args.bias_correction,
        bounds=GateBounds(min_psnr=args.min_psnr, min_frame_psnr=args.min_frame_psnr,
                          max_score_drop=args.max_score_drop),
        gate_frames=args.gate_frames, seed=args.seed, backend=args.backend,
    )


class Steps:
    """A bar over the export's steps on stderr (a terminal only): each step message advances it and
    is printed above it; the elapsed time keeps counting through long steps (PTQ, QAT, the gate)."""

    def __init__(self, total: int, enabled: bool) -> None:
        import threading

        self._bar = None
        self._stop = threading.Event()
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, desc=f"{PROG}: loading the checkpoint", file=sys.stderr, disable=None,
                         bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} steps [{elapsed}]", leave=False)
        if self._bar.disable:
            self._bar = None
            return
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            bar = self._bar
            if bar is not None:
                bar.refresh()

    def log(self, msg: str) -> None:
        line = f"{PROG}: {msg}"
        if self._bar is None:
            print(line, file=sys.stderr)
            return
        self._bar.write(line, file=sys.stderr)
        self._bar.update(1)
        self._bar.set_description_str(f"{PROG}: {_next_step(msg)}")

    def close(self) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _next_step(msg: str) -> str:
    """What the export does after the step ``msg`` reported (run_export's order)."""
    if msg.startswith("calibration"):
        return "INT8 post-training quantisation"
    if msg.startswith("INT8 PTQ") or msg.startswith("QAT"):
        return "writing and gating the candidate"
    if msg.startswith("gate"):
        return "next candidate / writing the artifact"
    return "finishing"


def _expected_steps(opts) -> int:
    """Step messages run_export logs: calibration, PTQ, (QAT), a gate per candidate, the final write."""
    if not opts.int8:
        return 2
    return 4 + (2 if opts.qat else 0)


def _body(argv: Sequence[str] | None) -> int:
    from qt_core.quiet import quiet_libraries
    from qt_core.zoo import is_zoo_name, resolve_checkpoint

    from .export import run_export

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    quiet_libraries(args.verbose)
    if is_zoo_name(str(args.checkpoint)):
        if args.out is None:  # the default is next to the checkpoint: inside the installed zoo
            raise ValueError(f"{args.checkpoint}: pass --out DIR (the zoo's own folder is not written to)")
        args.checkpoint = resolve_checkpoint(str(args.checkpoint))
    opts = options_from_args(args)
    # NNCF compiles its torch extension on first use and gives up after 60 s; on a busy 2-core
    # machine the build takes longer (seen: the export test timed out while training ran).
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
    steps = Steps(_expected_steps(opts), enabled=not args.no_progress)
    try:
        run_export(opts, log=steps.log)
    finally:
        steps.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
