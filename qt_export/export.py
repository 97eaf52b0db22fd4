"""The export pipeline: checkpoint -> view -> (PTQ, QAT) -> model files -> gate -> artifact.

Why it is shaped this way:

- Every refusal (format/target/option combination, existing output, INT8 without calibration
  data) happens before the checkpoint is even read.
- Each candidate (FP32, or INT8 PTQ and INT8 QAT) is written to its own scratch folder as a
  complete artifact and gated through ``qt_runtime``; only the best passing one is copied into a
  staged folder that replaces ``--out`` in one rename. A failing gate or an interruption
  leaves ``--out`` (and any previous artifact there) untouched.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .fold import QualityMode
from .formats import ExportSettings, FormatSpec, Request, resolve
from .gate import GateBounds, GateFailed, GateResult
from .quantize import QATOptions, QuantOptions

#: Default FP-kept roles for INT8, chosen by measurement on a trained edge_unet (dehaze, PTQ
#: without bias correction, PSNR vs FP32): none 45.6 dB, first 48.2, first+last 48.6,
#: first+last+residual 49.2. The first and last convolutions touch the [0, 1] image tensors and
#: are ~12% of the MACs; the residual add adds little, so it stays INT8.
DEFAULT_KEEP_FP: tuple[str, ...] = ("first", "last")


@dataclass(frozen=True)
class ExportOptions:
    checkpoint: Path
    target: str = "cpu"
    format: str | None = None
    int8: bool = False
    qat: bool = False
    qat_options: QATOptions = field(default_factory=QATOptions)
    quality: float | None = None  # None: the run's top level (method.top_level in the checkpoint)
    quality_input: bool = False
    calib: tuple[Path, ...] = ()
    calib_frames: int = 300
    calib_iqa: bool = True
    cache_dir: Path | None = None
    size: tuple[int, int] = (360, 640)
    dynamic: bool = False
    out: Path | None = None
    force: bool = False
    keep_fp: tuple[str, ...] = DEFAULT_KEEP_FP
    bias_correction: bool = False
    bounds: GateBounds = field(default_factory=GateBounds)
    gate_frames: int = 8
    seed: int = 0
    backend: str | None = None


@dataclass(frozen=True)
class Candidate:
    label: str  # "fp32" | "ptq" | "qat"
    folder: Path
    files: list[str]
    gate: GateResult
    outputs: np.ndarray
    extra: dict[str, Any]


def request_of(opts: ExportOptions) -> Request:
    return Request(target=opts.target, format=opts.format, int8=opts.int8, qat=opts.qat,
                   dynamic=opts.dynamic, quality_input=opts.quality_input)


def default_out(opts: ExportOptions, spec: FormatSpec) -> Path:
    tag = "-int8" if opts.int8 else ""
    return Path(opts.checkpoint).parent / f"export-{opts.target}-{spec.name}{tag}"


def preflight(opts: ExportOptions) -> tuple[FormatSpec, Path]:
    """All checks that need no model: raises before any work is done."""
    spec = resolve(request_of(opts))
    if opts.int8 and not opts.calib:
        raise ValueError("--int8 needs --calib PATH (video, image folder or images from the target camera)")
    if opts.size[0] < 8 or opts.size[1] < 8:
        raise ValueError(f"--size {opts.size[1]}x{opts.size[0]} is too small")
    out = Path(opts.out) if opts.out is not None else default_out(opts, spec)
    if out.exists() and not opts.force:
        raise FileExistsError(f"{out} already exists — choose another --out or pass --force to replace it")
    if not Path(opts.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {opts.checkpoint} not found")
    return spec, out


def synthetic_frames(n: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Deterministic gate frames when no footage is given (FP32 exports): smooth colour fields,
    gradients and edges, so conversion errors show up; (N, H, W, 3) uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    frames = []
    for i in range(n):
        small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        ramp = np.linspace(0.3, 1.0, w, dtype=np.float32)[None, :, None]
        img = img * (ramp if i % 2 else ramp[:, ::-1])
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _nchw(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)


#: Fewest frames INT8 ranges are fitted on, and fewest held-out frames the gate judges by. (An
#: export once calibrated *and* gated on the same single readable frame.)
MIN_CALIB_FRAMES = 8
MIN_GATE_FRAMES = 2


def _split(frames: np.ndarray, n_gate: int, source: str = "--calib") -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out) frames, disjoint: the held-out ones spread evenly over the set,
    at most a quarter of it. Refused below ``MIN_CALIB_FRAMES`` + ``MIN_GATE_FRAMES``."""
    n = len(frames)
    n_gate = min(n_gate, n // 4)
    if n_gate < MIN_GATE_FRAMES or n - n_gate < MIN_CALIB_FRAMES:
        raise ValueError(f"only {n} readable frames in {source}: INT8 needs at least {MIN_CALIB_FRAMES} to "
                         f"calibrate and {MIN_GATE_FRAMES} others to gate (--gate-frames); pass more footage")
    gate_idx = np.unique(np.linspace(0, n - 1, n_gate).round().astype(int))
    mask = np.ones(n, bool)
    mask[gate_idx] = False
    return frames[mask], frames[gate_idx]


def run_export(opts: ExportOptions, log: Callable[[str], None] = print) -> Path:
    """Export per ``opts``; returns the artifact folder. Raises GateFailed / ValueError."""
    import torch

    from qt_runtime import telemetry

    telemetry.disable()  # before NNCF and OpenVINO are imported

    from qt_core.atomic import staged_dir

    from . import artifact_writer as aw
    from .fold import export_view, load_model, reference_fn
    from .gate import ensemble_scorer, evaluate, run_backend

    spec, out = preflight(opts)
    loaded = load_model(opts.checkpoint)
    qmode = QualityMode("input" if opts.quality_input else "folded",
                        float(loaded.top_level if opts.quality is None else opts.quality))
    view = export_view(loaded, qmode)
    reference = reference_fn(loaded, qmode)
    settings = ExportSettings(dynamic=opts.dynamic, quality_input=opts.quality_input)

    calib_info = None
    calib_frames = None
    if opts.calib:
        from calibration.frames import frame_set_hash, select_frames
        from qt_runtime.manifest import CalibrationInfo

        cs = select_frames(list(opts.calib), n=opts.calib_frames + opts.gate_frames, size=opts.size,
                           seed=opts.seed, iqa=opts.calib_iqa, cache_dir=opts.cache_dir, spec=loaded.iqa_spec)
        calib_frames, held_out = _split(cs.frames, opts.gate_frames, ", ".join(map(str, opts.calib)))
        calib_info = CalibrationInfo(hash=frame_set_hash(calib_frames), frames=len(calib_frames),
                                     source=", ".join(str(p) for p in opts.calib))
        log(f"calibration: {len(calib_frames)} frames, {len(held_out)} held out for the gate")
    else:
        held_out = synthetic_frames(opts.gate_frames, opts.size, opts.seed)
    gate_in = _nchw(held_out)
    ref_out = np.concatenate([reference(torch.from_numpy(gate_in[i : i + 1])).numpy() for i in range(len(gate_in))])
    scorer = ensemble_scorer(loaded.iqa_spec)
    example = torch.from_numpy(gate_in[:1])
    precision = "int8" if opts.int8 else "fp32"

    # what the quality levels meant in training travels with the artifact (informational keys)
    carried = {"iqa_ensemble": loaded.iqa_spec or "default", "level_cuts": loaded.level_cuts,
               "top_level": loaded.top_level}

    def make_manifest(files: list[str], gate: GateResult | None, extra: dict[str, Any]):
        return aw.build_manifest(
            arch=loaded.arch, task=loaded.task, fmt=spec.name, target=opts.target, files=files,
            precision=precision, quality=aw.quality_info(qmode.mode, qmode.level, loaded.levels),
            size=None if opts.dynamic else opts.size, multiple=loaded.pad_multiple,
            calibration=calib_info, gate=None if gate is None else aw.gate_info(gate), extra={**carried, **extra})

    scratch = Path(tempfile.mkdtemp(prefix=".qt-export-"))
    try:
        candidates: list[Candidate] = []
        for label, module, extra in _modules(opts, spec, view, reference, calib_frames, example, log):
            folder = scratch / label
            folder.mkdir()
            files = spec.export_fn(module, folder, example, settings)
            if spec.name == "onnx_qdq":
                from .qdq_check import check_qdq

                qdq = check_qdq(folder / files[0])
                extra = {**extra, "qdq": {"pairs": qdq.quantize, "weights": qdq.weight_pairs,
                                          "activations": qdq.activation_pairs}}
            aw.finalize(folder, make_manifest(files, None, extra))
            outputs = run_backend(folder, gate_in, quality=None, backend=opts.backend)
            result = evaluate(ref_out, outputs, opts.bounds, scorer)
            log(f"gate [{label}]: PSNR vs FP32 {result.psnr_vs_fp32:.2f} dB, score drop "
                f"{100 * (result.score_drop or 0):.2f}% -> {'pass' if result.passed else 'FAIL'}")
            candidates.append(Candidate(label, folder, files, result, outputs, extra))

        passing = [c for c in candidates if c.gate.passed]
        if not passing:
            reasons = "; ".join(f"{c.label}: {', '.join(c.gate.reasons)}" for c in candidates)
            raise GateFailed(f"consistency gate failed ({reasons}); nothing was written to {out}")
        best = max(passing, key=lambda c: c.gate.psnr_vs_fp32)
        report = {
            "chosen": best.label,
            "format": spec.name,
            "target": opts.target,
            "precision": precision,
            "bounds": dataclasses.asdict(opts.bounds),
            "candidates": {c.label: {**c.gate.to_dict(), **c.extra} for c in candidates},
            "calibration": None if calib_info is None else calib_info.__dict__,
            "gate_frames": "held-out calibration frames" if opts.calib else "synthetic",
            "checkpoint": str(opts.checkpoint),
        }
        with staged_dir(out, force=opts.force) as stage:
            for name in best.files:
                shutil.copy2(best.folder / name, stage / name)
            manifest = aw.finalize(stage, make_manifest(best.files, best.gate, {**best.extra, "variant": best.label}))
            aw.write_json(stage / "report.json", report)
            aw.write_compare(stage / "compare.png", gate_in, ref_out, best.outputs)
            _verify(stage, gate_in[:1], best.outputs[:1], opts.backend)
        log(f"wrote {out} ({spec.name}, {precision}, {best.label}; sha256 {manifest.sha256[best.files[0]][:12]}…)")
        return out
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _verify(folder: Path, x: np.ndarray, expected: np.ndarray, backend: str | None) -> None:
    """The staged artifact loads (hashes, names, shapes) and reproduces the gated output."""
    from .gate import run_backend

    got = run_backend(folder, x, backend=backend)
    if not np.allclose(got, expected, atol=1e-5):
        raise ValueError(f"final artifact differs from the gated one (max {np.abs(got - expected).max():.3g})")


def _modules(opts: ExportOptions, spec: FormatSpec, view: Any, reference: Any, calib: np.ndarray | None,
             example: Any, log: Callable[[str], None]):
    """Yield (label, module-or-ov-model, manifest extra) for each candidate to gate."""
    import torch

    from . import quantize as qz

    if not opts.int8:
        yield "fp32", view, {}
        return
    assert calib is not None
    tensors = [torch.from_numpy(f) for f in _nchw(calib)[:, None]]
    signed = spec.name == "onnx_qdq"
    qopts = QuantOptions(keep_fp=opts.keep_fp, signed_activations=signed, bias_correction=opts.bias_correction)
    extra = {"keep_fp": list(opts.keep_fp), "bias_correction": opts.bias_correction, "quantization": "nncf-ptq"}
    log(f"INT8 PTQ on {len(tensors)} frames (keep FP: {', '.join(opts.keep_fp) or 'none'})")
    if spec.name == "openvino":
        from .openvino_export import convert

        ptq = qz.ptq_openvino(convert(view, example, ExportSettings(dynamic=opts.dynamic)), tensors, qopts)
        yield "ptq", ptq, extra
    else:
        yield "ptq", qz.strip_qdq(qz.ptq_torch(view, tensors, qopts), example), extra
    if opts.qat:
        log(f"QAT: {opts.qat_options.steps} steps (distillation + cropped consistency)")
        # NNCF may wrap the module in place; QAT must never touch the FP32 reference's weights.
        q = qz.ptq_torch(copy.deepcopy(view), tensors, qopts)
        frames = torch.from_numpy(_nchw(calib))
        q = qz.qat(q, reference, frames, replace(opts.qat_options, seed=opts.seed))
        qat_extra = {**extra, "quantization": "nncf-qat", "qat_steps": opts.qat_options.steps}
        yield "qat", (q if spec.name == "openvino" else qz.strip_qdq(q, example)), qat_extra
