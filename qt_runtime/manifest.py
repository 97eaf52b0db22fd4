"""The artifact manifest (docs/artifact.md): frozen dataclasses, reading, atomic writing.

This module is shared by ``qt_export`` (which writes manifests) and ``qt_runtime`` (which checks
them), so it imports only the standard library: the contract must not depend on torch or on a
backend being installed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qt_core.atomic import atomic_write_bytes
from qt_runtime.formats import ARTIFACT_FORMATS

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

FORMATS = tuple(ARTIFACT_FORMATS)  # the contract table: qt_runtime/formats.py
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
    fed ``default`` unless the caller asks for another (fractional) level. No level is assumed
    here: the export writes the run's own (``method.top_level`` or ``--quality``) and the parser
    requires it, so a manifest without one is refused ("re-export") rather than guessed at.
    """

    mode: str
    levels: int
    level: float | None = None
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
    quality: QualityInfo
    input: InputInfo = field(default_factory=InputInfo)
    output: OutputInfo = field(default_factory=OutputInfo)
    target: str = "cpu"
    calibration: CalibrationInfo | None = None
    gate: GateInfo | None = None
    created: str = ""
    toolkit_version: str = field(default_factory=_toolkit_version)
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_file(self) -> str:
        """The file a backend opens (the format's model suffix: the .xml of an IR, the .onnx)."""
        suffix = ARTIFACT_FORMATS[self.format].model_suffix
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
        """Parse and validate by type and meaning; every problem is one :class:`ArtifactError`
        naming ``where`` (fuzzed manifests: ``tests/test_fuzz.py``)."""
        try:
            return cls._parse(d, where)
        except ArtifactError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError, RecursionError) as exc:
            # a shape no explicit check below anticipated: still the project's error, never a traceback
            raise ArtifactError(f"{where}: malformed manifest ({type(exc).__name__}: {str(exc)[:120]}); "
                                "re-export the artifact") from None

    @classmethod
    def _parse(cls, d: Mapping[str, Any], where: str) -> Manifest:
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{where}: expected a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if not _is_int(version):
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

        def text(key: str, m: Mapping[str, Any] = d, ctx: str = "", default: str | None = None) -> str:
            value = need(key, m, ctx) if default is None else m.get(key, default)
            if not isinstance(value, str) or (default is None and not value):
                raise ArtifactError(f"{where}: '{ctx}{key}' must be a non-empty string, got {value!r}")
            return value

        def integer(key: str, m: Mapping[str, Any], ctx: str, lo: int, default: int | None = None) -> int:
            value = need(key, m, ctx) if default is None else m.get(key, default)
            if not _is_int(value) or value < lo:
                raise ArtifactError(f"{where}: '{ctx}{key}' must be an integer >= {lo}, got {value!r}")
            return value

        def choice(key: str, options: tuple[str, ...]) -> str:
            value = need(key)
            if not isinstance(value, str) or value not in options:
                raise ArtifactError(f"{where}: '{key}' is {value!r}; expected one of {list(options)}")
            return value

        def section(key: str, required: bool = True) -> Mapping[str, Any] | None:
            value = need(key) if required else d.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, Mapping):
                raise ArtifactError(f"{where}: '{key}' must be an object, got {type(value).__name__}")
            return value

        fmt = choice("format", FORMATS)
        precision = choice("precision", PRECISIONS)
        target = choice("target", TARGETS)
        files = need("files")
        sha = need("sha256")
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise ArtifactError(f"{where}: 'files' must be a non-empty list of file names")
        if len(set(files)) != len(files):
            raise ArtifactError(f"{where}: 'files' lists a file twice: {files}")
        if not isinstance(sha, Mapping) or set(sha) != set(files):
            raise ArtifactError(
                f"{where}: 'sha256' must name exactly the files in 'files' {files}; "
                f"got {sorted(map(str, sha)) if isinstance(sha, Mapping) else type(sha).__name__}")
        for name in files:
            if not name or name in (".", "..") or Path(name).name != name:
                raise ArtifactError(f"{where}: file name {name!r} must be a plain name inside the artifact")
            digest = sha[name]
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in _HEX for c in digest.lower()):
                raise ArtifactError(f"{where}: 'sha256' of {name!r} must be 64 hex digits, got {digest!r}")

        inp_d, out_d, q_d = section("input"), section("output"), section("quality")
        size = inp_d.get("size")
        if size is not None and (not isinstance(size, list) or len(size) != 2
                                 or not all(_is_int(s) and 0 < s <= MAX_SIDE for s in size)):
            raise ArtifactError(f"{where}: 'input.size' must be [H, W] of ints in 1..{MAX_SIDE} or null, got {size!r}")
        multiple = integer("multiple", inp_d, "input.", 1, default=1)
        if multiple > MAX_SIDE:
            raise ArtifactError(f"{where}: 'input.multiple' {multiple} is larger than any frame")
        inp = InputInfo(
            name=text("name", inp_d, "input."), layout=text("layout", inp_d, "input.", "NCHW"),
            color=text("color", inp_d, "input.", "RGB"), range=_range(inp_d.get("range", [0, 1]), where, "input"),
            dtype=text("dtype", inp_d, "input.", "float32"), size=tuple(size) if size else None, multiple=multiple)
        out = OutputInfo(
            name=text("name", out_d, "output."), layout=text("layout", out_d, "output.", "NCHW"),
            color=text("color", out_d, "output.", "RGB"), range=_range(out_d.get("range", [0, 1]), where, "output"),
            dtype=text("dtype", out_d, "output.", "float32"))
        for info, key in ((inp, "input"), (out, "output")):
            if info.layout != "NCHW" or info.color not in ("RGB", "BGR") or info.dtype != "float32":
                raise ArtifactError(f"{where}: '{key}' must be NCHW float32 with color RGB or BGR "
                                    f"(got {info.layout} {info.color} {info.dtype})")
        mode = need("mode", q_d, "quality.")
        levels = integer("levels", q_d, "quality.", 2)
        if mode == "folded":
            level = _level(need("level", q_d, "quality."), levels, where, "quality.level")
            quality = QualityInfo(mode="folded", levels=levels, level=level)
        elif mode == "input":
            quality = QualityInfo(mode="input", levels=levels, level=None,
                                  input_name=text("input_name", q_d, "quality."),
                                  default=_level(need("default", q_d, "quality."), levels, where, "quality.default"))
        else:
            raise ArtifactError(f"{where}: 'quality.mode' is {mode!r}; expected one of {list(QUALITY_MODES)}")

        cal_d = section("calibration", required=False)
        calibration = None if cal_d is None else CalibrationInfo(
            hash=text("hash", cal_d, "calibration."), frames=integer("frames", cal_d, "calibration.", 1),
            source=str(cal_d.get("source", "")))
        if precision == "int8" and calibration is None:
            raise ArtifactError(f"{where}: an int8 artifact must record its 'calibration'; re-export it")
        gate_d = section("gate", required=False)
        gate = None
        if gate_d is not None:
            passed = need("passed", gate_d, "gate.")
            numbers = {k: gate_d.get(k) for k in ("psnr_vs_fp32", "score_drop")}
            bounds = gate_d.get("bounds") or {}
            if not isinstance(passed, bool) or not isinstance(bounds, Mapping) or not all(
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers.values()):
                raise ArtifactError(f"{where}: 'gate' must hold passed (true/false), numbers and a bounds object")
            gate = GateInfo(passed=passed, bounds=dict(bounds), **numbers)
        known = {"schema_version", "toolkit_version", "arch", "task", "format", "target", "files", "sha256",
                 "input", "output", "precision", "quality", "calibration", "gate", "created"}
        return cls(
            schema_version=version, toolkit_version=str(d.get("toolkit_version", "")),
            arch=text("arch"), task=text("task"), format=fmt, target=target,
            files=tuple(files), sha256=dict(sha), input=inp, output=out, precision=precision,
            quality=quality, calibration=calibration, gate=gate, created=str(d.get("created", "")),
            extra={k: v for k, v in d.items() if k not in known})


_HEX = frozenset("0123456789abcdef")
#: No camera frame is larger; bounds sizes and multiples read from a manifest.
MAX_SIDE = 16384


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _level(value: Any, levels: int, where: str, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= levels - 1:
        raise ArtifactError(f"{where}: '{key}' must be a number in [0, {levels - 1}], got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _range(value: Any, where: str, key: str) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            or not value[0] < value[1]):
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{p}: manifest is not readable JSON ({type(exc).__name__}); re-export the artifact") from None
    return Manifest.from_dict(data, where=str(p))


def write_manifest(path: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write atomically (temp file + ``os.replace``) so a reader never sees half a manifest."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(p, text.encode("utf-8"))
    return p
