"""The export pipeline: checkpoint -> view -> frames -> (PTQ, QAT) -> model files -> gate -> artifact.

Why it is shaped this way:

- Every refusal (format/target/option combination, existing output, INT8 without calibration
  data) happens before the checkpoint is even read.
- Each candidate (FP32, or INT8 PTQ and INT8 QAT) is written to its own scratch folder as a
  complete artifact and gated through ``qt_runtime``; only the best passing one is copied into a
  staged folder that replaces ``--out`` in one rename. A failing gate or an interruption
  leaves ``--out`` (and any previous artifact there) untouched.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint_view import QualityMode
from .formats import ExportSettings, FormatSpec, Request, resolve
from .gate import GateBounds, GateFailed, GateResult
from .quantize import QATOptions, QuantOptions

#: Default FP-kept roles for INT8, chosen by measurement (docs/results.md, "Export and INT8"): the
#: first and last convolutions touch the [0, 1] image tensors and are ~12% of the MACs; the
#: residual add adds little, so it stays INT8.


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
    keep_fp: tuple[str, ...] | None = None  # None: the backbone's own (``int8_keep_fp``)
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


@dataclass(frozen=True)
class Model:
    """Step 1-2's result: the checkpoint's model, the quality handling, the module to export and
    its FP32 reference."""

    loaded: Any  # checkpoint_view.LoadedModel
    quality: QualityMode
    view: Any
    reference: Callable[[Any], Any]


@dataclass(frozen=True)
class Frames:
    """Step 3's result: INT8 calibration frames (None for FP32) and the gate's held-out inputs
    with the FP32 reference's outputs on them."""

    calib: np.ndarray | None
    calib_info: Any  # CalibrationInfo | None
    gate_in: np.ndarray
    ref_out: np.ndarray


def run_export(opts: ExportOptions, log: Callable[[str], None] = print) -> Path:
    """Export per ``opts``; returns the artifact folder. Raises GateFailed / ValueError.

    Reads top to bottom: refuse → load → view → frames → (quantise → write → gate) per candidate →
    choose → write the artifact. Each step is one function below; none branches on a format name.
    """
    from qt_runtime import telemetry

    telemetry.disable()  # before NNCF and OpenVINO are imported
    spec, out = preflight(opts)
    model = load_view(opts)
    frames = gate_frames(opts, model, log)
    scorer = _scorer(model)
    with _scratch() as scratch:
        candidates = [gate_candidate(opts, spec, model, frames, scorer, scratch, label, module, extra, log)
                      for label, module, extra in quantise(opts, spec, model, frames, log)]
        best = choose(candidates, out)
        return write_artifact(opts, spec, model, frames, candidates, best, out, log)


def load_view(opts: ExportOptions) -> Model:
    """1-2. The checkpoint's EMA model, and the module to export at the run's top level (or --quality)."""
    from .checkpoint_view import export_view, load_model, reference_fn

    loaded = load_model(opts.checkpoint)
    quality = QualityMode("input" if opts.quality_input else "folded",
                          float(loaded.top_level if opts.quality is None else opts.quality))
    return Model(loaded, quality, export_view(loaded, quality), reference_fn(loaded, quality))


def gate_frames(opts: ExportOptions, model: Model, log: Callable[[str], None]) -> Frames:
    """3. Calibration frames picked from --calib with the run's IQA ensemble, and disjoint held-out
    frames for the gate (synthetic frames when FP32 has no footage); the FP32 reference on them."""
    import torch

    calib = calib_info = None
    if opts.calib:
        from calibration.frames import frame_set_hash, select_frames
        from qt_runtime.manifest import CalibrationInfo

        source = ", ".join(str(p) for p in opts.calib)
        cs = select_frames(list(opts.calib), n=opts.calib_frames + opts.gate_frames, size=opts.size,
                           seed=opts.seed, iqa=opts.calib_iqa, cache_dir=opts.cache_dir, spec=model.loaded.iqa_spec)
        calib, held_out = _split(cs.frames, opts.gate_frames, source)
        calib_info = CalibrationInfo(hash=frame_set_hash(calib), frames=len(calib), source=source)
        log(f"calibration: {len(calib)} frames, {len(held_out)} held out for the gate")
    else:
        held_out = synthetic_frames(opts.gate_frames, opts.size, opts.seed)
    gate_in = _nchw(held_out)
    ref_out = np.concatenate([model.reference(torch.from_numpy(gate_in[i : i + 1])).numpy()
                              for i in range(len(gate_in))])
    return Frames(calib, calib_info, gate_in, ref_out)


def quantise(opts: ExportOptions, spec: FormatSpec, model: Model, frames: Frames, log: Callable[[str], None]):
    """4. Yield (label, module, manifest extra) per candidate: FP32 alone, or INT8 PTQ (+ QAT) by the
    format's hooks."""
    import torch

    from . import quantize as qz

    example = _example(frames)
    if not opts.int8:
        yield "fp32", model.view, {}
        return
    assert frames.calib is not None
    tensors = [torch.from_numpy(f) for f in _nchw(frames.calib)[:, None]]
    keep_fp = model.loaded.int8_keep_fp if opts.keep_fp is None else opts.keep_fp
    qopts = QuantOptions(keep_fp=keep_fp, signed_activations=spec.signed_activations,
                         bias_correction=opts.bias_correction)
    extra = {"keep_fp": list(keep_fp), "bias_correction": opts.bias_correction, "quantization": "nncf-ptq"}
    log(f"INT8 PTQ on {len(tensors)} frames (keep FP: {', '.join(keep_fp) or 'none'})")
    yield "ptq", spec.hook("ptq")(model.view, tensors, qopts, example, _settings(opts, model)), extra
    if opts.qat:
        log(f"QAT: {opts.qat_options.steps} steps (distillation + cropped consistency)")
        # NNCF may wrap the module in place; QAT must never touch the FP32 reference's weights.
        q = qz.ptq_torch(copy.deepcopy(model.view), tensors, qopts)
        q = qz.qat(q, model.reference, torch.from_numpy(_nchw(frames.calib)), replace(opts.qat_options, seed=opts.seed))
        finish = spec.hook("finish_qat")
        yield "qat", (q if finish is None else finish(q, example)), {
            **extra, "quantization": "nncf-qat", "qat_steps": opts.qat_options.steps}


def gate_candidate(opts: ExportOptions, spec: FormatSpec, model: Model, frames: Frames, scorer: Any,
                   scratch: Path, label: str, module: Any, extra: dict[str, Any],
                   log: Callable[[str], None]) -> Candidate:
    """5-6. Write one candidate as a complete artifact in its own scratch folder, then gate it
    through qt_runtime against the FP32 reference."""
    from . import artifact_writer as aw
    from .gate import evaluate, run_backend

    folder = scratch / label
    folder.mkdir()
    files = spec.export_fn(module, folder, _example(frames), _settings(opts, model))
    inspect = spec.hook("inspect")
    if inspect is not None:
        extra = {**extra, **inspect(folder, files)}
    aw.finalize(folder, _manifest(opts, spec, model, frames, files, None, extra))
    outputs = run_backend(folder, frames.gate_in, quality=None, backend=opts.backend)
    result = evaluate(frames.ref_out, outputs, opts.bounds, scorer)
    log(f"gate [{label}]: PSNR vs FP32 {result.psnr_vs_fp32:.2f} dB, score drop "
        f"{100 * (result.score_drop or 0):.2f}% -> {'pass' if result.passed else 'FAIL'}")
    return Candidate(label, folder, files, result, outputs, extra)


def choose(candidates: list[Candidate], out: Path) -> Candidate:
    """7. The passing candidate closest to FP32; none passing is GateFailed (nothing written)."""
    passing = [c for c in candidates if c.gate.passed]
    if not passing:
        reasons = "; ".join(f"{c.label}: {', '.join(c.gate.reasons)}" for c in candidates)
        raise GateFailed(f"consistency gate failed ({reasons}); nothing was written to {out}")
    return max(passing, key=lambda c: c.gate.psnr_vs_fp32)


def write_artifact(opts: ExportOptions, spec: FormatSpec, model: Model, frames: Frames,
                   candidates: list[Candidate], best: Candidate, out: Path, log: Callable[[str], None]) -> Path:
    """8. The chosen candidate's files, gate_frames.npz, manifest (with its gate), report.json and
    compare.png, staged and renamed over ``out`` in one step, then loaded back and checked."""
    from qt_core.atomic import staged_dir

    from . import artifact_writer as aw

    report = {
        "chosen": best.label, "format": spec.name, "target": opts.target, "precision": _precision(opts),
        "bounds": dataclasses.asdict(opts.bounds),
        "candidates": {c.label: {**c.gate.to_dict(), **c.extra} for c in candidates},
        "calibration": None if frames.calib_info is None else frames.calib_info.__dict__,
        "gate_frames": "held-out calibration frames" if opts.calib else "synthetic",
        "checkpoint": str(opts.checkpoint),
    }
    with staged_dir(out, force=opts.force) as stage:
        for name in best.files:
            shutil.copy2(best.folder / name, stage / name)
        # the gate frames travel with the artifact, listed and hashed: qt-run verify re-runs them on the device
        files = [*best.files, aw.write_gate_frames(stage, frames.gate_in, frames.ref_out, best.outputs)]
        manifest = aw.finalize(stage, _manifest(opts, spec, model, frames, files, best.gate,
                                                {**best.extra, "variant": best.label}))
        aw.write_json(stage / "report.json", report)
        aw.write_compare(stage / "compare.png", frames.gate_in, frames.ref_out, best.outputs)
        _verify(stage, frames.gate_in[:1], best.outputs[:1], opts.backend)
    log(f"wrote {out} ({spec.name}, {_precision(opts)}, {best.label}; sha256 {manifest.sha256[best.files[0]][:12]}…)")
    return out


# --------------------------------------------------------------------------- small pieces


def _precision(opts: ExportOptions) -> str:
    return "int8" if opts.int8 else "fp32"


def _settings(opts: ExportOptions, model: Model) -> ExportSettings:
    return ExportSettings(dynamic=opts.dynamic, quality_input=opts.quality_input, quality=model.quality.level)


def _example(frames: Frames) -> Any:
    import torch

    return torch.from_numpy(frames.gate_in[:1])


def _scorer(model: Model) -> Any:
    from .gate import ensemble_scorer

    return ensemble_scorer(model.loaded.iqa_spec)  # the run's own reward ensemble


@contextlib.contextmanager
def _scratch():
    scratch = Path(tempfile.mkdtemp(prefix=".qt-export-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _manifest(opts: ExportOptions, spec: FormatSpec, model: Model, frames: Frames, files: list[str],
              gate: GateResult | None, extra: dict[str, Any]):
    """The manifest of a candidate; what the quality levels meant in training travels with it."""
    from . import artifact_writer as aw

    loaded = model.loaded
    carried = {"iqa_ensemble": loaded.iqa_spec or "default", "level_cuts": loaded.level_cuts,
               "top_level": loaded.top_level}
    return aw.build_manifest(
        arch=loaded.arch, task=loaded.task, fmt=spec.name, target=opts.target, files=files,
        precision=_precision(opts), quality=aw.quality_info(model.quality.mode, model.quality.level, loaded.levels),
        size=None if opts.dynamic else opts.size, multiple=loaded.pad_multiple,
        calibration=frames.calib_info, gate=None if gate is None else aw.gate_info(gate), extra={**carried, **extra})


def _verify(folder: Path, x: np.ndarray, expected: np.ndarray, backend: str | None) -> None:
    """The staged artifact loads (hashes, names, shapes) and reproduces the gated output."""
    from .gate import run_backend

    got = run_backend(folder, x, backend=backend)
    if not np.allclose(got, expected, atol=1e-5):
        raise ValueError(f"final artifact differs from the gated one (max {np.abs(got - expected).max():.3g})")
