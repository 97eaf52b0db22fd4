"""Build a TensorRT engine from an ONNX artifact, on the device that will run it.

Engines are not portable across GPUs or TensorRT versions, so the file name carries both
(``model.<trt version>.<gpu>.engine``) and the backend loads only the one matching the machine.
Build facts go in a JSON sidecar next to the engine — never glued into the engine file, which
would break ``trtexec`` and other TensorRT tools.

Precision: a Q/DQ ONNX (explicit quantisation) is built as a STRONGLY_TYPED network, where the
graph's own types decide precision and builder precision flags are not allowed; any other ONNX is
built weakly typed with ``BuilderFlag.FP16`` (when ``fp16``) so TensorRT may pick FP16 kernels.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qt_core.atomic import atomic_write_bytes
from qt_core.hashing import sha256_file
from qt_runtime.artifact import Artifact, load_artifact
from qt_runtime.backends.base import BackendUnavailableError
from qt_runtime.manifest import ArtifactError

Shape = tuple[int, ...]
DEFAULT_DYNAMIC_HW = {"min": (64, 64), "opt": (720, 1280), "max": (1088, 1920)}


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build the network; the message carries TensorRT's errors."""


def import_tensorrt() -> Any:
    """``tensorrt`` or a :class:`BackendUnavailableError` that says what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed here; build engines on the target GPU machine with "
            "pip install 'qualiteacher-edge[tensorrt]' (tensorrt>=10, cuda-python)") from exc
    return trt


def import_cudart() -> Any:
    """CUDA runtime bindings from ``cuda-python`` (new and old module layouts)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise BackendUnavailableError(
                "the TensorRT backend needs cuda-python: pip install 'qualiteacher-edge[tensorrt]'") from exc
    return cudart


def cuda_check(result: Any) -> Any:
    """Unpack a cuda-python ``(err, value...)`` tuple, raising on a CUDA error."""
    cudart = import_cudart()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, msg = cudart.cudaGetErrorString(err)
        raise RuntimeError(f"CUDA error {err}: {msg.decode() if isinstance(msg, bytes) else msg}")
    return rest[0] if len(rest) == 1 else (tuple(rest) or None)


def gpu_name(device: int = 0) -> str:
    """Marketing name of CUDA device ``device`` (e.g. ``NVIDIA H200``)."""
    cudart = import_cudart()
    try:
        count = cuda_check(cudart.cudaGetDeviceCount())
    except RuntimeError as exc:  # no driver / no device: not a bug, just not a GPU machine
        raise BackendUnavailableError(f"no usable CUDA device here ({exc})") from exc
    if count == 0 or device >= count:
        raise BackendUnavailableError(f"no CUDA device {device} (found {count})")
    props = cuda_check(cudart.cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).split("\x00")[0]


def sanitise(name: str) -> str:
    """File-name-safe token: ``NVIDIA GeForce RTX 4090`` -> ``nvidia-geforce-rtx-4090``."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.") or "gpu"


def engine_filename(trt_version: str, gpu: str) -> str:
    return f"model.{sanitise(trt_version)}.{sanitise(gpu)}.engine"


def engine_path(artifact_dir: str | Path, trt_version: str | None = None, gpu: str | None = None,
                device: int = 0) -> Path:
    """Where the engine for this machine lives (versions/GPU detected when not given)."""
    if trt_version is None:
        trt_version = import_tensorrt().__version__
    if gpu is None:
        gpu = gpu_name(device)
    return Path(artifact_dir) / engine_filename(trt_version, gpu)


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def parse_shape(text: str) -> Shape:
    """``"1x3x720x1280"`` -> ``(1, 3, 720, 1280)``."""
    try:
        shape = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError as exc:
        raise ValueError(f"shape {text!r}: expected e.g. 1x3x720x1280") from exc
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"shape {text!r}: dims must be positive")
    return shape


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def image_profile(artifact: Artifact, min_shape: Shape | None, opt_shape: Shape | None,
                  max_shape: Shape | None) -> tuple[Shape, Shape, Shape] | None:
    """(min, opt, max) for the image input, or None when the model input is fully static."""
    info = artifact.model_info.input(artifact.manifest.input.name)
    dims = info.shape if info is not None and info.shape else (None, 3, None, None)
    if all(d is not None for d in dims):
        return None
    m = max(1, artifact.manifest.input.multiple)
    out = []
    for key, given in (("min", min_shape), ("opt", opt_shape), ("max", max_shape)):
        if given is None:
            h, w = DEFAULT_DYNAMIC_HW[key]
            given = (1, 3, _round_up(h, m), _round_up(w, m))
        if len(given) != 4:
            raise ValueError(f"{key} shape {given}: expected N x 3 x H x W")
        given = tuple(d if d is not None else g for d, g in zip(dims, given, strict=True))
        if given[1] != 3 or given[2] % m or given[3] % m:
            raise ValueError(f"{key} shape {given}: need 3 channels and H, W multiples of {m}")
        out.append(given)
    lo, opt, hi = out
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
        raise ValueError(f"profile needs min <= opt <= max per dim, got {lo} {opt} {hi}")
    return lo, opt, hi


def build_engine(artifact_dir: str | Path, out: str | Path | None = None, *, fp16: bool = True,
                 workspace_gb: float = 4.0, min_shape: Shape | None = None, opt_shape: Shape | None = None,
                 max_shape: Shape | None = None, timing_cache: str | Path | None = None,
                 strongly_typed: bool | None = None, device: int = 0, verbose: bool = False) -> Path:
    """Build, save (atomically) and return the engine path; writes ``<engine>.json`` alongside.

    ``strongly_typed`` defaults to "the ONNX has Q/DQ ops". ``min/opt/max_shape`` (NCHW) set the
    optimisation profile of a dynamic image input (defaults: 64x64 / 720x1280 / 1088x1920).
    ``timing_cache`` is loaded when it exists and rewritten after the build, which makes
    rebuilds on the same GPU much faster.
    """
    artifact = load_artifact(artifact_dir)
    m = artifact.manifest
    if m.format not in ("onnx", "onnx_qdq"):
        raise ArtifactError(f"artifact {artifact.path}: TensorRT engines are built from ONNX artifacts; this one "
                            f"is {m.format!r} — export with --target jetson/desktop-gpu")
    trt = import_tensorrt()
    cudart = import_cudart()
    cuda_check(cudart.cudaSetDevice(device))
    gpu = gpu_name(device)
    target = Path(out) if out is not None else artifact.path / engine_filename(trt.__version__, gpu)
    typed = artifact.is_qdq if strongly_typed is None else strongly_typed

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(artifact.model_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {artifact.model_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    precision_flags: list[str] = []
    if not typed:  # strongly typed networks reject precision flags: the graph's types rule
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
            precision_flags.append("FP16")
        if artifact.is_qdq:  # weakly typed explicit quantisation needs INT8 enabled
            config.set_flag(trt.BuilderFlag.INT8)
            precision_flags.append("INT8")

    profile_shapes = image_profile(artifact, min_shape, opt_shape, max_shape)
    profile_record: dict[str, Any] = {}
    if profile_shapes is not None or _has_dynamic_input(network):
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if tensor.name == m.input.name and profile_shapes is not None:
                shapes = profile_shapes
            else:
                static = tuple(1 if d < 0 else d for d in tensor.shape)
                shapes = (static, static, static)
            profile.set_shape(tensor.name, *shapes)
            profile_record[tensor.name] = [list(s) for s in shapes]
        config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine for {artifact.path} (see the TensorRT log "
                               "above; try a larger --workspace-gb or a smaller --max-shape)")
    data = bytes(memoryview(serialized))
    atomic_write_bytes(target, data)
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    sidecar = {
        "engine": target.name, "engine_sha256": sha256_file(target), "tensorrt": trt.__version__,
        "gpu": gpu, "source": m.model_file, "source_sha256": m.sha256[m.model_file],
        "precision": m.precision, "strongly_typed": typed, "precision_flags": precision_flags,
        "profile": profile_record, "workspace_gb": workspace_gb, "build_seconds": round(seconds, 2),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(sidecar_path(target), (json.dumps(sidecar, indent=2) + "\n").encode())
    return target


def _has_dynamic_input(network: Any) -> bool:
    return any(d < 0 for i in range(network.num_inputs) for d in network.get_input(i).shape)


def build_engine_cli(argv: Sequence[str] | None = None) -> int:
    """``qt-run build-engine ARTIFACT [...]``; prints the engine path, returns an exit code."""
    from qt_core.cli import OneLineParser, run_main

    prog = "qt-run build-engine"
    p = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", help="artifact folder (format onnx or onnx_qdq)")
    p.add_argument("--out", help="engine path (default: next to the artifact, named by TensorRT version and GPU)")
    p.add_argument("--no-fp16", dest="fp16", action="store_false", help="no FP16 kernels for non-Q/DQ models")
    p.add_argument("--workspace-gb", type=float, default=4.0)
    p.add_argument("--min-shape", type=parse_shape, help="e.g. 1x3x64x64 (dynamic models)")
    p.add_argument("--opt-shape", type=parse_shape, help="e.g. 1x3x720x1280")
    p.add_argument("--max-shape", type=parse_shape, help="e.g. 1x3x1088x1920")
    p.add_argument("--timing-cache", help="timing cache file (read if present, written after the build)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--verbose", action="store_true")

    def body(argv: Sequence[str] | None) -> int:
        try:
            a = p.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        print(build_engine(a.artifact, a.out, fp16=a.fp16, workspace_gb=a.workspace_gb, min_shape=a.min_shape,
                           opt_shape=a.opt_shape, max_shape=a.max_shape, timing_cache=a.timing_cache,
                           device=a.device, verbose=a.verbose))
        return 0

    return run_main(prog, body, argv, user_errors=(BackendUnavailableError, EngineBuildError))
