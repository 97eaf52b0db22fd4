"""qt-run: restore a video stream with an exported artifact.

  qt-run ARTIFACT --source SRC --sink SINK [--backend openvino|onnxruntime|tensorrt] [--device CPU]
         [--hint auto|LATENCY|THROUGHPUT] [--precision f32|bf16|f16] [--quality L] [--temporal]
         [--policy tile|resize|letterbox] [--max-frames N] [--summary PATH] [--json] [--verbose]
  qt-run zoo:dehaze --source clip.mp4 --sink out.mp4   (a model of the zoo: zoo:TASK, zoo:TASK/int8, zoo:TASK/fp32)
  qt-run build-engine ARTIFACT [...]      (TensorRT engine, built on the device that runs it)
  qt-run verify ARTIFACT [--backend B] [--device D] [--json]
                                          (re-run the export gate's frames here: exit 0 if they hold its bounds)

Sources: 0 | /dev/video0 | rtsp://... | http://... | udp://@:5000 | 'GStreamer ! appsink' |
jetson-csi[:SENSOR][:WxH][@FPS] | clip.mp4 | frames/
Sinks: out.mp4 | out.avi | frames_out/ | window | udp://127.0.0.1:5000 | mjpeg://127.0.0.1:8090 | null
In the window: + / - step the quality level, a digit sets it, q or Esc quits.
SIGINT/SIGTERM stop capture, finish the frames in flight and close the output so it plays.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

PROG = "qt-run"


def _parser() -> argparse.ArgumentParser:
    from qt_core.cli import OneLineParser
    from qt_runtime.backends import BACKENDS

    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="artifact folder written by qt-export, or a zoo model: zoo:TASK[/int8|/fp32]")
    p.add_argument("--source", required=True, help="camera index, URL, GStreamer string, video file or folder")
    p.add_argument("--sink", default="null", help="video file, folder, window, udp://..., mjpeg://..., null")
    p.add_argument("--backend", choices=tuple(BACKENDS), default=None,
                   help="default: from the artifact format")
    p.add_argument("--device", default=None, help="backend device, e.g. CPU, GPU, AUTO (default: the backend's)")
    p.add_argument("--hint", choices=("auto", "LATENCY", "THROUGHPUT"), default="auto",
                   help="OpenVINO performance hint; auto: THROUGHPUT for files and folders, LATENCY for live sources")
    p.add_argument("--precision", choices=("f32", "bf16", "f16"), default=None,
                   help="OpenVINO precision for the model's float parts (default f32, as the export gate measured; "
                        "bf16 is faster on CPUs with AMX or AVX512-BF16 but is not what the gate checked)")
    p.add_argument("--quality", type=float, default=None,
                   help="quality level for artifacts exported with a quality input (fractional allowed)")
    p.add_argument("--temporal", action="store_true", help="suppress frame-to-frame flicker (motion-gated EMA)")
    p.add_argument("--temporal-alpha", type=float, default=0.2,
                   help="weight of the new frame in static regions (lower = smoother)")
    p.add_argument("--flicker", action="store_true", help="measure static-region flicker (on with --temporal)")
    p.add_argument("--policy", choices=("tile", "resize", "letterbox"), default="tile",
                   help="frames that differ from a static model input: tile (full resolution), resize, letterbox")
    p.add_argument("--tile-overlap", type=int, default=16, help="pixels shared by neighbouring tiles")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--loop", action="store_true", help="rewind file sources at their end")
    p.add_argument("--fps", type=float, default=None, help="output frame rate (default: the source's, else 25)")
    p.add_argument("--summary", type=Path, default=None, help="write the JSON run summary here")
    p.add_argument("--json", action="store_true", help="print the JSON run summary on stdout (the human one goes "
                                                        "to stderr)")
    p.add_argument("--verbose", action="store_true", help="show the libraries' INFO logs")
    p.add_argument("--allow-ungated", action="store_true",
                   help="run an artifact whose export gate failed or is missing (refused otherwise)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--queue-depth", type=int, default=None,
                   help="frames each stage hand-off may hold, = requests in flight (default 3)")
    p.add_argument("--no-async", action="store_true", help="do not use the backend's async request queue")
    p.add_argument("--retry-max-tries", type=int, default=10, help="reconnect attempts for a live source")
    p.add_argument("--retry-max-seconds", type=float, default=60.0, help="give up a live source after this gap")
    p.add_argument("--open-timeout", type=float, default=5.0, help="seconds to wait when (re)opening a URL")
    p.add_argument("--read-timeout", type=float, default=2.0, help="seconds without data before a reconnect")
    p.add_argument("--decode-threads", type=int, default=None,
                   help="FFmpeg decoder threads for files and URLs (default: FFmpeg's; 1 saves CPU on small machines)")
    p.add_argument("--force", action="store_true", help="replace an existing output video")
    p.add_argument("--codec", choices=("ffmpeg", "opencv"), default=None,
                   help="video file writer (default: ffmpeg H.264 when available, else OpenCV)")
    return p


def _install_signals(stop) -> dict[int, object]:
    """SIGINT/SIGTERM -> graceful stop; a second signal restores the default (hard) behaviour."""
    previous: dict[int, object] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()
        signal.signal(signum, previous.get(signum, signal.SIG_DFL))

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
    return previous


def _backend_options(args: argparse.Namespace, artifact, live: bool) -> dict[str, object]:
    """--hint / --precision for OpenVINO; an error for other backends rather than silently ignoring them."""
    from qt_runtime.backends import default_backend
    from qt_runtime.backends.openvino_backend import default_hint

    if (args.backend or default_backend(artifact)) != "openvino":
        if args.hint != "auto" or args.precision:
            raise ValueError("--hint and --precision apply to the openvino backend only")
        return {}
    options: dict[str, object] = {"hint": default_hint(live) if args.hint == "auto" else args.hint}
    if args.precision:
        options["inference_precision"] = args.precision
    return options


def _check_writable(path: Path, what: str) -> None:
    """Before the run, not after it: a summary that cannot be written ended a finished run in a traceback."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {path}: cannot write there (not a writable folder); choose another path")


def _check_gate(artifact, allow_ungated: bool) -> None:
    """Run only what passed its export gate (FP32 parity on held-out frames), unless told otherwise."""
    gate = artifact.manifest.gate
    if gate is not None and gate.passed:
        return
    state = "has no export gate" if gate is None else "failed its export gate"
    if allow_ungated:
        print(f"{PROG}: warning: {artifact.path} {state}; running it because of --allow-ungated", file=sys.stderr)
        return
    raise ValueError(f"{artifact.path} {state}; re-export it with qt-export (which gates it) or pass "
                     "--allow-ungated to run it anyway")


def _run(args: argparse.Namespace) -> int:
    from qt_runtime.artifact import load_artifact
    from qt_runtime.backends import open_backend
    from qt_runtime.pipeline import Pipeline, PipelineOptions
    from qt_runtime.sinks import SinkOptions, open_sink
    from qt_runtime.sources import SourceOptions, open_source
    from qt_runtime.stats import write_summary
    from qt_runtime.temporal import TemporalOptions

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError("--max-frames must be >= 1")
    if args.summary is not None:
        _check_writable(args.summary, "--summary")
    from qt_core.zoo import resolve_path

    artifact = load_artifact(resolve_path(args.artifact, "artifact"))
    _check_gate(artifact, args.allow_ungated)
    temporal = TemporalOptions(alpha_static=args.temporal_alpha) if args.temporal else None
    opts = PipelineOptions(policy=args.policy, tile_overlap=args.tile_overlap, quality=args.quality,
                           temporal=temporal, flicker=args.flicker,
                           queue_depth=PipelineOptions.queue_depth if args.queue_depth is None else args.queue_depth,
                           max_frames=args.max_frames, use_async=not args.no_async,
                           progress=False if args.no_progress else None)
    source = open_source(args.source, SourceOptions(retry_max_tries=args.retry_max_tries,
                                                    retry_max_seconds=args.retry_max_seconds,
                                                    read_timeout_s=args.read_timeout, open_timeout_s=args.open_timeout,
                                                    loop=args.loop, decode_threads=args.decode_threads))
    backend = sink = None
    try:
        backend = open_backend(artifact, args.backend, args.device, **_backend_options(args, artifact, source.live))
        pipeline = Pipeline(source, backend, None, opts)  # validates --quality before a sink opens
        sink = open_sink(args.sink, SinkOptions(fps=args.fps or source.fps or 25.0, codec=args.codec, force=args.force,
                                                on_key=pipeline.quality.handle_key))
        pipeline.sink = sink
        previous = _install_signals(pipeline.stop)
        try:
            result = pipeline.run()
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
    finally:
        source.close()
        if backend is not None:
            backend.close()
    if args.json:
        print(json.dumps(result.summary, sort_keys=True))
    print(human_summary(result.summary), file=sys.stderr if args.json else sys.stdout)
    if "truncated" in result.summary:
        t = result.summary["truncated"]
        print(f"{PROG}: warning: {args.source} ended after {t['read']} of the {t['expected']} frames its header "
              "declares (truncated or damaged file); the output holds only those", file=sys.stderr)
    if args.summary is not None:
        write_summary(result.summary, args.summary)
    if result.error is not None:
        print(f"{PROG}: error: {result.error}", file=sys.stderr)
        return 1
    return 0


def human_summary(summary: dict) -> str:
    """The run in one short line: frames, FPS, inference latency p50/p99, dropped and corrupt frames; gaps,
    reconnects and resolution changes when the stream had any (the JSON summary holds the details)."""
    infer = (summary.get("latency") or {}).get("infer") or {}
    latency = (f"inference latency p50 {infer['p50_ms']:.1f} ms, p99 {infer['p99_ms']:.1f} ms"
               if infer.get("count") else "no frame reached the model")
    def count(n: int, what: str) -> str:
        return f", {n} {what}{'s' * (n != 1)}"

    extra = ""
    if summary.get("reconnects"):
        extra += count(summary["reconnects"], "reconnect")
    gaps = summary.get("gaps") or {}
    if gaps.get("count"):
        extra += count(gaps["count"], "gap") + f" ({gaps.get('total_s', 0.0):.1f} s without frames)"
    sizes = summary.get("resolution_changes") or {}
    if sizes.get("count"):
        last = (sizes.get("recent") or [{}])[-1]
        extra += count(sizes["count"], "resolution change") + (f" (last {last['from']} -> {last['to']})" if last else "")
    ratio = (summary.get("flicker") or {}).get("output_over_input")
    if ratio is not None:
        extra += f", static-region flicker x{ratio:.2f} of the input's"
    return (f"{PROG}: {summary.get('frames_out', 0)} frames in {summary.get('elapsed_s', 0.0):.1f} s, "
            f"{summary.get('fps_mean', 0.0):.1f} FPS; {latency}; dropped {summary.get('dropped_frames', 0)}, "
            f"corrupt {summary.get('corrupt_frames_skipped', 0)}{extra}")


def _resolve_zoo_argument(argv: list[str]) -> list[str]:
    """``verify`` / ``build-engine``: their ARTIFACT may be a zoo name too (the first positional)."""
    from qt_core.zoo import is_zoo_name, resolve_artifact

    return [str(resolve_artifact(a)) if is_zoo_name(a) else a for a in argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 the run failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from qt_runtime import telemetry

    telemetry.disable()
    from qt_runtime.sources import limit_decoded_pixels

    limit_decoded_pixels()  # before the first decode: OpenCV reads the limit once
    from qt_core.quiet import quiet_libraries

    quiet_libraries(verbose="--verbose" in argv)
    if argv and argv[0] in ("build-engine", "verify"):
        sub = argv[0]
        try:
            rest = _resolve_zoo_argument([a for a in argv[1:] if a != "--verbose"])
        except ValueError as exc:  # qt_core.zoo.ZooError: one line, like every bad input
            print(f"{PROG} {sub}: error: {exc}", file=sys.stderr)
            return 2
        if sub == "build-engine":
            from qt_runtime.engine_build import build_engine_cli

            return build_engine_cli(rest)
        from qt_runtime.verify import verify_cli

        return verify_cli(rest)
    from qt_core.cli import run_main
    from qt_runtime.backends.base import BackendUnavailableError
    from qt_runtime.sinks import SinkError
    from qt_runtime.sources import SourceError

    def body(argv: Sequence[str] | None) -> int:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        return _run(args)

    return run_main(PROG, body, argv, user_errors=(BackendUnavailableError, SourceError, SinkError))


if __name__ == "__main__":
    sys.exit(main())
