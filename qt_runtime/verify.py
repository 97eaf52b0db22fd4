"""``qt-run verify ARTIFACT``: re-run the export gate's frames on the device that will run them.

Why: the export gate measures parity with the FP32 model on the export host, and that parity does
not hold on every CPU (INT8 OpenVINO outputs differ between an AMX Xeon and an AVX2 EPYC: other
kernels, other rounding). So the artifact carries its gate frames (:data:`GATE_FRAMES`: the uint8
inputs, the FP32 reference outputs as float16 and the PSNR each frame measured on the export
host), listed and hashed in the manifest like every other file, and this module runs them through
the normal hash-checked loader and backend and applies the bounds the gate recorded: the mean
PSNR, the PSNR of every frame, finite outputs only. The IQA score drop, the gate's fourth bound,
needs torch and stays an export-time check.

The frame fitting (:func:`run_frames`) and the PSNR bounds (:func:`check_parity`) are the gate's
own: ``qt_export/gate.py`` calls them, so export and device measure the same thing the same way.
PSNR is ``qt_core.metrics.psnr``. Standard library and numpy only (plus the chosen backend).
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qt_core.machine import cpu_info
from qt_core.metrics import psnr
from qt_runtime.manifest import ArtifactError

#: The artifact file holding the gate frames (listed in ``files``, hashed in ``sha256``).
GATE_FRAMES = "gate_frames.npz"
#: Arrays in :data:`GATE_FRAMES`: ``inputs`` uint8 N x 3 x H x W (RGB, the gate's input x 255),
#: ``reference`` float16 N x 3 x H x W (the FP32 model's output), ``host_psnr`` float64 N (the
#: artifact's PSNR against that stored reference, per frame, on the export host).
GATE_KEYS = ("inputs", "reference", "host_psnr")

PROG = "qt-run verify"


# --------------------------------------------------------------------------- the stored frames
@dataclass(frozen=True)
class GateFrames:
    inputs: np.ndarray  # float32 N x 3 x H x W in [0, 1], bit-identical to the export gate's input
    reference: np.ndarray  # float32 N x 3 x H x W (stored as float16)
    host_psnr: np.ndarray  # float64 N


def _to_float(inputs_u8: np.ndarray) -> np.ndarray:
    """The export's conversion (``uint8 -> float32 / 255``), so the inputs are the gate's bits."""
    return inputs_u8.astype(np.float32) / 255.0


def encode_gate_frames(gate_in: np.ndarray, reference: np.ndarray, host_outputs: np.ndarray) -> bytes:
    """The :data:`GATE_FRAMES` bytes for the gate's float inputs (uint8 / 255), the FP32 reference
    outputs and the outputs the artifact gave on the export host (all N x 3 x H x W).

    Raises ValueError if the inputs are not exactly uint8 / 255 (they would not be the gate's
    frames after a round trip) or the reference does not fit float16.
    """
    gate_in = np.asarray(gate_in, np.float32)
    u8 = np.clip(np.round(gate_in * 255.0), 0, 255).astype(np.uint8)
    if gate_in.ndim != 4 or gate_in.shape[1] != 3 or not np.array_equal(_to_float(u8), gate_in):
        raise ValueError("gate frames must be N x 3 x H x W uint8 / 255 to be stored exactly")
    ref16 = np.asarray(reference, np.float32).astype(np.float16)
    if ref16.shape != gate_in.shape or not np.isfinite(ref16).all():
        raise ValueError("the FP32 reference outputs are not finite float16-range images shaped like the "
                         "gate frames; cannot store them")
    host_psnr = psnr(np.asarray(host_outputs, np.float32), ref16.astype(np.float32))
    buf = io.BytesIO()
    np.savez_compressed(buf, inputs=u8, reference=ref16, host_psnr=host_psnr.astype(np.float64))
    return buf.getvalue()


def read_gate_frames(artifact: Any) -> GateFrames:
    """The gate frames of a loaded (hash-checked) artifact; :class:`ArtifactError` if it has none
    (exported before ``qt-run verify`` existed) or they are malformed."""
    where = f"artifact {artifact.path}"
    if GATE_FRAMES not in artifact.manifest.files:
        raise ArtifactError(f"{where} carries no gate frames ('{GATE_FRAMES}'; exported before qt-run verify "
                            "existed?); re-export it with qt-export to verify it on this device")
    try:
        with np.load(artifact.path / GATE_FRAMES, allow_pickle=False) as z:
            if sorted(z.files) != sorted(GATE_KEYS):
                raise ArtifactError(f"{where}: '{GATE_FRAMES}' holds {sorted(z.files)}, expected "
                                    f"{list(GATE_KEYS)}; re-export the artifact")
            inputs, reference, host = (z[k] for k in GATE_KEYS)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{where}: '{GATE_FRAMES}' is not readable ({type(exc).__name__}); "
                            "re-export the artifact") from None
    if (inputs.dtype != np.uint8 or inputs.ndim != 4 or inputs.shape[0] < 1 or inputs.shape[1] != 3
            or reference.dtype != np.float16 or reference.shape != inputs.shape or host.shape != inputs.shape[:1]):
        raise ArtifactError(f"{where}: '{GATE_FRAMES}' arrays do not match (inputs {inputs.dtype} "
                            f"{list(inputs.shape)}, reference {reference.dtype} {list(reference.shape)}); "
                            "re-export the artifact")
    return GateFrames(_to_float(inputs), reference.astype(np.float32), host.astype(np.float64))


# --------------------------------------------------------------------------- the gate's measurement
def run_frames(backend: Any, frames: np.ndarray, quality: float | None = None) -> np.ndarray:
    """Outputs (N, 3, H, W) of ``frames`` through an open backend, one frame at a time.

    A dynamic artifact gets each frame padded to its ``multiple`` and the output cropped back,
    exactly as ``qt-run`` fits frames, so the gate measures what ships at sizes that are not a
    multiple of the network's stride.
    """
    from qt_runtime.tiling import fit_to_input, restore_from_input

    spec = backend.input_spec

    def one(frame: np.ndarray) -> np.ndarray:  # (1, 3, H, W)
        if spec.size is not None or spec.multiple <= 1:
            return backend.infer(frame, quality=quality)
        fitted, placement = fit_to_input(frame[0].transpose(1, 2, 0), None, "pad", multiple=spec.multiple)
        out = backend.infer(np.ascontiguousarray(fitted.transpose(2, 0, 1))[None], quality=quality)
        return restore_from_input(out[0].transpose(1, 2, 0), placement).transpose(2, 0, 1)[None]

    return np.concatenate([one(frames[i : i + 1]) for i in range(len(frames))])


@dataclass(frozen=True)
class Parity:
    """Per-frame PSNR (dB) of outputs against the reference, the non-finite value count and the
    broken bounds (empty: passed)."""

    psnrs: np.ndarray
    non_finite: int
    reasons: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.reasons


def check_parity(reference: np.ndarray, outputs: np.ndarray, min_psnr: float, min_frame_psnr: float) -> Parity:
    """The gate's PSNR bounds: the mean over frames, every frame, finite outputs only."""
    psnrs = psnr(outputs, reference)
    reasons = []
    finite = np.isfinite(outputs)
    bad = int((~finite).sum())
    if bad:
        frames_hit = int((~finite).reshape(len(outputs), -1).any(1).sum())
        reasons.append(f"{bad} non-finite output values in {frames_hit} frame(s)")
    mean_psnr = float(psnrs.mean())
    if mean_psnr < min_psnr:
        reasons.append(f"PSNR vs FP32 {mean_psnr:.2f} dB < {min_psnr:g} dB")
    worst = int(np.argmin(psnrs))
    if psnrs[worst] < min_frame_psnr:
        low = int((psnrs < min_frame_psnr).sum())
        reasons.append(f"{low} frame(s) below {min_frame_psnr:g} dB vs FP32 (worst: frame {worst}, "
                       f"{psnrs[worst]:.2f} dB)")
    return Parity(psnrs, bad, tuple(reasons))


# --------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class VerifyResult:
    artifact: str
    passed: bool
    frames: int
    psnr_mean: float
    psnr_min: float
    worst_frame: int
    host_psnr_mean: float
    host_psnr_min: float
    bounds: dict[str, float]
    reasons: tuple[str, ...]
    backend: str
    device: str
    precision: str
    inference_precision: str | None = None  # OpenVINO's, when asked for (None: the backend default, f32)
    cpu: dict[str, Any] = field(default_factory=dict)
    psnr_per_frame: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        d["psnr_per_frame"] = list(self.psnr_per_frame)
        return d

    def where(self) -> str:
        isa = " ".join(self.cpu.get("isa", [])) or "no ISA flags read"
        return f"{self.backend} {self.device} on {self.cpu.get('model', '?')} (class {self.cpu.get('class', '?')}: {isa})"

    def line(self) -> str:
        """One human line: frames, mean/worst PSNR vs the export host's FP32, verdict, device."""
        b = self.bounds
        return (f"{PROG}: {'passed' if self.passed else 'FAILED'}: {self.artifact}, {self.frames} gate frames, "
                f"PSNR vs the export host's FP32 mean {self.psnr_mean:.2f} dB (export host {self.host_psnr_mean:.2f}), "
                f"worst {self.psnr_min:.2f} dB (frame {self.worst_frame}; export host {self.host_psnr_min:.2f}); "
                f"bounds {b['min_psnr']:g} / {b['min_frame_psnr']:g} dB; {self.precision} artifact"
                f"{'' if self.inference_precision is None else ' in ' + self.inference_precision} via {self.where()}")


def _bounds(gate: Any, where: str) -> dict[str, float]:
    if gate is None:
        raise ArtifactError(f"{where} has no export gate to verify against; re-export it with qt-export")
    if not gate.passed:
        raise ArtifactError(f"{where} failed its export gate; re-export it with qt-export (nothing to verify)")
    out = {}
    for key in ("min_psnr", "min_frame_psnr"):
        value = gate.bounds.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise ArtifactError(f"{where}: the manifest's gate records no '{key}' bound ({value!r}); "
                                "re-export it with qt-export")
        out[key] = float(value)
    return out


def verify(path: str | Path, backend: str | None = None, device: str | None = None,
           precision: str | None = None) -> VerifyResult:
    """Run the artifact's stored gate frames here and apply its recorded bounds (``precision``:
    OpenVINO's inference precision; default f32, what ``qt-run`` runs and the gate measured).

    Raises :class:`ArtifactError` when the artifact cannot be verified (hashes, no gate frames, no
    gate); a device that breaks the bounds is a result with ``passed`` False, not an exception.
    """
    from qt_runtime.artifact import load_artifact
    from qt_runtime.backends import default_backend, open_backend

    art = load_artifact(path)  # hashes (the gate frames' too), names, shapes, precision
    where = f"artifact {art.path}"
    frames = read_gate_frames(art)
    bounds = _bounds(art.manifest.gate, where)
    backend = backend or default_backend(art)
    options: dict[str, Any] = {}
    if precision is not None:
        if backend != "openvino":
            raise ValueError(f"--precision applies to the openvino backend only (this run: {backend})")
        options["inference_precision"] = precision
    be = open_backend(art, backend, device, **options)
    try:
        from qt_runtime.backends.base import InputError

        try:
            outputs = run_frames(be, frames.inputs)
        except InputError as exc:
            raise ArtifactError(f"{where}: its gate frames do not fit its model ({exc}); re-export it") from None
        name, dev = be.name, str(be.device)
    finally:
        be.close()
    parity = check_parity(frames.reference, outputs, bounds["min_psnr"], bounds["min_frame_psnr"])
    p = parity.psnrs
    return VerifyResult(
        artifact=str(art.path), passed=parity.passed, frames=len(p), psnr_mean=float(p.mean()),
        psnr_min=float(p.min()), worst_frame=int(np.argmin(p)), host_psnr_mean=float(frames.host_psnr.mean()),
        host_psnr_min=float(frames.host_psnr.min()), bounds=bounds, reasons=parity.reasons, backend=name,
        device=dev, precision=art.manifest.precision, inference_precision=precision, cpu=cpu_info(),
        psnr_per_frame=tuple(round(float(v), 3) for v in p))


# --------------------------------------------------------------------------- the command
def verify_cli(argv: Sequence[str] | None = None) -> int:
    """``qt-run verify ARTIFACT [--backend B] [--device D] [--precision P] [--json]``: exit 0 when
    the gate frames hold the recorded bounds here, 1 when they do not, 2 for bad input."""
    from qt_core.cli import OneLineParser, run_main
    from qt_runtime.backends import BACKENDS
    from qt_runtime.backends.base import BackendUnavailableError

    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", type=Path, help="artifact folder written by qt-export")
    p.add_argument("--backend", choices=tuple(BACKENDS), default=None, help="default: from the artifact format")
    p.add_argument("--device", default=None, help="backend device, e.g. CPU, GPU (default: the backend's)")
    p.add_argument("--precision", choices=("f32", "bf16", "f16"), default=None,
                   help="OpenVINO precision to check (default f32, as qt-run runs and the gate measured)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    def body(argv: Sequence[str] | None) -> int:
        try:
            a = p.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        result = verify(a.artifact, a.backend, a.device, a.precision)
        print(json.dumps(result.to_dict(), sort_keys=True) if a.json else result.line())
        if result.passed:
            return 0
        fix = ("re-export on a host with this CPU (or in FP32, without --int8)" if result.precision == "int8"
               else "re-export it")
        print(f"{PROG}: error: {result.artifact} breaks its export gate on this device ({result.where()}): "
              f"{'; '.join(result.reasons)}; do not run it here — {fix} and verify again", file=sys.stderr)
        return 1

    return run_main(PROG, body, argv, user_errors=(BackendUnavailableError,))

