"""The artifact manifest (docs/artifact.md): frozen dataclasses, reading, atomic writing.

This module is shared by ``qt_export`` (which writes manifests) and ``qt_runtime`` (which checks
them), so it imports only the standard library: the contract must not depend on torch or on a
backend being installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

FORMATS = ("openvino", "onnx", "onnx_qdq")
TARGETS = ("cpu", "jetson", "desktop-gpu")
PRECISIONS = ("fp32", "fp16", "int8")
QUALITY_MODES = ("folded", "input")


class ArtifactError(ValueError):
    """An artifact (or its manifest) cannot be trusted; the message says which and what to do."""


def _toolkit_version() -> str:
    try:
        from importlib.metadata import version

        return version("qualiteacher-edge")
    except Exception:  # not installed (e.g. running from a checkout)
        return "0+unknown"


class _ChannelOrder:
    """``bgr``: the model's channels are blue, green, red (``color`` is validated as RGB or BGR)."""

    color: str

    @property
    def bgr(self) -> bool:
        return self.color == "BGR"


@dataclass(frozen=True)
class InputInfo(_ChannelOrder):
    """Image input of the model: NCHW float32, RGB or BGR, in ``range``; ``size`` None means dynamic H, W."""

    name: str = "input"
    layout: str = "NCHW"
    color: str = "RGB"
    range: tuple[float, float] = (0.0, 1.0)
    dtype: str = "float32"
    size: tuple[int, int] | None = None
    multiple: int = 8


@dataclass(frozen=True)
class OutputInfo(_ChannelOrder):
    """Image output of the model, same conventions as the input."""

    name: str = "output"
    layout: str = "NCHW"
    color: str = "RGB"
    range: tuple[float, float] = (0.0, 1.0)
    dtype: str = "float32"


@dataclass(frozen=True)
class QualityInfo:
    """How the quality condition reaches the model.

    ``folded``: baked in at ``level``; ``input``: a float32 [1] tensor named ``input_name``,
    fed ``default`` unless the caller asks for another (fractional) level.
    """

    mode: str = "folded"
    levels: int = 8
    level: float | None = 7
    input_name: str | None = None
    default: float | None = None

    @property
    def is_input(self) -> bool:
        return self.mode == "input"


@dataclass(frozen=True)
class CalibrationInfo:
    hash: str
    frames: int
    source: str


@dataclass(frozen=True)
class GateInfo:
    passed: bool
    psnr_vs_fp32: float | None = None
    score_drop: float | None = None
    bounds: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """One artifact's manifest. ``extra`` keeps unknown keys so a round trip loses nothing."""

    arch: str
    task: str
    format: str
    files: tuple[str, ...]
    sha256: Mapping[str, str]
    precision: str
    input: InputInfo = field(default_factory=InputInfo)
    output: OutputInfo = field(default_factory=OutputInfo)
    quality: QualityInfo = field(default_factory=QualityInfo)
    target: str = "cpu"
    calibration: CalibrationInfo | None = None
    gate: GateInfo | None = None
    created: str = ""
    toolkit_version: str = field(default_factory=_toolkit_version)
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_file(self) -> str:
        """The file a backend opens: the .xml for OpenVINO IR, else the .onnx."""
        suffix = ".xml" if self.format == "openvino" else ".onnx"
        for name in self.files:
            if name.endswith(suffix):
                return name
        raise ArtifactError(f"manifest format {self.format!r} needs a '*{suffix}' in files {list(self.files)}")

    def to_dict(self) -> dict[str, Any]:
        inp, out, q = self.input, self.output, self.quality
        quality: dict[str, Any]
        if q.is_input:
            quality = {"mode": "input", "input_name": q.input_name, "default": q.default, "levels": q.levels}
        else:
            quality = {"mode": "folded", "level": q.level, "levels": q.levels}
        d: dict[str, Any] = {
            "schema_version": self.schema_version,
            "toolkit_version": self.toolkit_version,
            "arch": self.arch,
            "task": self.task,
            "format": self.format,
            "target": self.target,
            "files": list(self.files),
            "sha256": dict(self.sha256),
            "input": {
                "name": inp.name, "layout": inp.layout, "color": inp.color, "range": list(inp.range),
                "dtype": inp.dtype, "size": list(inp.size) if inp.size else None, "multiple": inp.multiple,
            },
            "output": {
                "name": out.name, "layout": out.layout, "color": out.color, "range": list(out.range),
                "dtype": out.dtype,
            },
            "precision": self.precision,
            "quality": quality,
            "calibration": None if self.calibration is None else {
                "hash": self.calibration.hash, "frames": self.calibration.frames,
                "source": self.calibration.source,
            },
            "gate": None if self.gate is None else {
                "passed": self.gate.passed, "psnr_vs_fp32": self.gate.psnr_vs_fp32,
                "score_drop": self.gate.score_drop, "bounds": dict(self.gate.bounds),
            },
            "created": self.created,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "manifest") -> Manifest:
        """Parse and validate; every problem is one :class:`ArtifactError` naming ``where``."""
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ArtifactError(f"{where}: 'schema_version' missing or not an integer ({version!r})")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{where}: schema_version {version} is newer than this runtime understands "
                f"({SCHEMA_VERSION}); upgrade qualiteacher-edge to run this artifact")
        if version < 1:
            raise ArtifactError(f"{where}: schema_version {version} is invalid (expected {SCHEMA_VERSION})")

        def need(key: str, m: Mapping[str, Any] = d, ctx: str = "") -> Any:
            if key not in m:
                raise ArtifactError(f"{where}: required key '{ctx}{key}' is missing; re-export the artifact")
            return m[key]

        def choice(key: str, options: tuple[str, ...]) -> str:
            value = need(key)
            if value not in options:
                raise ArtifactError(f"{where}: '{key}' is {value!r}; expected one of {list(options)}")
            return value

        fmt = choice("format", FORMATS)
        precision = choice("precision", PRECISIONS)
        target = choice("target", TARGETS)
        files = need("files")
        sha = need("sha256")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise ArtifactError(f"{where}: 'files' must be a non-empty list of file names")
        if not isinstance(sha, Mapping) or set(sha) != set(files):
            raise ArtifactError(
                f"{where}: 'sha256' must name exactly the files in 'files' {files}; got {sorted(sha or {})}")
        for name in files:
            if Path(name).name != name:
                raise ArtifactError(f"{where}: file name {name!r} must be a plain name inside the artifact")

        inp_d, out_d, q_d = need("input"), need("output"), need("quality")
        for key, sub in (("input", inp_d), ("output", out_d), ("quality", q_d)):
            if not isinstance(sub, Mapping):
                raise ArtifactError(f"{where}: '{key}' must be an object")
        size = inp_d.get("size")
        if size is not None and (not isinstance(size, list) or len(size) != 2
                                 or not all(isinstance(s, int) and s > 0 for s in size)):
            raise ArtifactError(f"{where}: 'input.size' must be [H, W] of positive ints or null, got {size!r}")
        inp = InputInfo(
            name=need("name", inp_d, "input."), layout=inp_d.get("layout", "NCHW"),
            color=inp_d.get("color", "RGB"), range=_range(inp_d.get("range", [0, 1]), where, "input"),
            dtype=inp_d.get("dtype", "float32"), size=tuple(size) if size else None,
            multiple=int(inp_d.get("multiple", 1) or 1))
        out = OutputInfo(
            name=need("name", out_d, "output."), layout=out_d.get("layout", "NCHW"),
            color=out_d.get("color", "RGB"), range=_range(out_d.get("range", [0, 1]), where, "output"),
            dtype=out_d.get("dtype", "float32"))
        for info, key in ((inp, "input"), (out, "output")):
            if info.layout != "NCHW" or info.color not in ("RGB", "BGR") or info.dtype != "float32":
                raise ArtifactError(f"{where}: '{key}' must be NCHW float32 with color RGB or BGR "
                                    f"(got {info.layout} {info.color} {info.dtype})")
        mode = need("mode", q_d, "quality.")
        levels = int(need("levels", q_d, "quality."))
        if mode == "folded":
            quality = QualityInfo(mode="folded", levels=levels, level=need("level", q_d, "quality."))
        elif mode == "input":
            quality = QualityInfo(mode="input", levels=levels, level=None,
                                  input_name=need("input_name", q_d, "quality."),
                                  default=need("default", q_d, "quality."))
        else:
            raise ArtifactError(f"{where}: 'quality.mode' is {mode!r}; expected one of {list(QUALITY_MODES)}")

        cal_d = d.get("calibration")
        calibration = None if cal_d is None else CalibrationInfo(
            hash=need("hash", cal_d, "calibration."), frames=int(need("frames", cal_d, "calibration.")),
            source=str(cal_d.get("source", "")))
        gate_d = d.get("gate")
        gate = None if gate_d is None else GateInfo(
            passed=bool(need("passed", gate_d, "gate.")), psnr_vs_fp32=gate_d.get("psnr_vs_fp32"),
            score_drop=gate_d.get("score_drop"), bounds=dict(gate_d.get("bounds") or {}))
        known = {"schema_version", "toolkit_version", "arch", "task", "format", "target", "files", "sha256",
                 "input", "output", "precision", "quality", "calibration", "gate", "created"}
        return cls(
            schema_version=version, toolkit_version=str(d.get("toolkit_version", "")),
            arch=str(need("arch")), task=str(need("task")), format=fmt, target=target,
            files=tuple(files), sha256=dict(sha), input=inp, output=out, precision=precision,
            quality=quality, calibration=calibration, gate=gate, created=str(d.get("created", "")),
            extra={k: v for k, v in d.items() if k not in known})


def _range(value: Any, where: str, key: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not value[0] < value[1]:
        raise ArtifactError(f"{where}: '{key}.range' must be [low, high] with low < high, got {value!r}")
    return (float(value[0]), float(value[1]))


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read ``manifest.json`` (or the manifest inside an artifact folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise ArtifactError(f"{p}: no manifest found; is this an artifact folder written by qt-export?")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: manifest is not readable JSON ({exc}); re-export the artifact") from exc
    return Manifest.from_dict(data, where=str(p))


def write_manifest(path: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write atomically (temp file + ``os.replace``) so a reader never sees half a manifest."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(p, text.encode("utf-8"))
    return p


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so multi-GB weights do not need to fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(folder: str | os.PathLike[str], files: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``{name: sha256}`` for ``files`` inside ``folder`` — what export puts in ``sha256``."""
    return {name: sha256_file(Path(folder) / name) for name in files}
