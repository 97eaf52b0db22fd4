"""Load an artifact folder and confirm that the model files are what the manifest says.

"Trust nothing the manifest and hashes do not confirm": :func:`load_artifact` checks schema
version, file list, sha256, input/output names and shapes, precision and quality mode against
the model file itself, so a wrong artifact fails with one clear error before the first frame.
The model is read with ``onnx`` (ONNX) or ``openvino`` (IR) when importable; without ``onnx`` the
ONNX file is inspected through ONNX Runtime plus a scan of the protobuf for op names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qt_core.atomic import atomic_write_bytes
from qt_core.cli import one_line
from qt_core.hashing import sha256_file
from qt_runtime.formats import ARTIFACT_FORMATS
from qt_runtime.manifest import (
    ArtifactError,
    Manifest,
    read_manifest,
)

# Ops that mean "this graph is quantised" in ONNX and in OpenVINO IR.
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                       "QLinearMatMul", "ConvInteger", "MatMulInteger", "FakeQuantize", "FakeConvert"})
METADATA_KEY = "qualiteacher_edge.manifest"
# Manifest keys mirrored into ONNX metadata that must agree with manifest.json when present.
# (sha256 is never mirrored: mirroring changes the file's hash; gate/created may be written later.)
MIRROR_CHECKED_KEYS = ("schema_version", "arch", "task", "format", "precision", "input", "output", "quality")


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (None for a dynamic dim) and element type of one model input/output."""

    name: str
    shape: tuple[int | None, ...] | None  # None: rank unknown
    dtype: str  # numpy-style name: "float32", "float16", ...


@dataclass(frozen=True)
class ModelInfo:
    """What the model file itself says, independent of the manifest."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_types: frozenset[str]
    has_fp16: bool
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def quant_ops(self) -> frozenset[str]:
        return self.op_types & QUANT_OPS

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)


@dataclass(frozen=True)
class Artifact:
    """A verified artifact: its folder, manifest, model file and what the model file declares."""

    path: Path
    manifest: Manifest
    model_info: ModelInfo

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def is_qdq(self) -> bool:
        return bool(self.model_info.quant_ops)

    @property
    def image_batch(self) -> int | None:
        """Static batch size of the image input, or None when the batch is dynamic."""
        t = self.model_info.input(self.manifest.input.name)
        return t.shape[0] if t is not None and t.shape else None


def load_artifact(path: str | os.PathLike[str], *, verify_hashes: bool = True) -> Artifact:
    """Read and verify an artifact folder; raise :class:`ArtifactError` on the first mismatch."""
    root = Path(path)
    if root.is_file() and root.name == "manifest.json":
        root = root.parent
    if not root.is_dir():
        raise ArtifactError(f"artifact {root}: not a folder; pass the folder qt-export wrote")
    manifest = read_manifest(root)
    where = f"artifact {root}"
    for name in manifest.files:
        f = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts or f.is_symlink():
            raise ArtifactError(f"{where}: file '{name}' is a link or lies outside the folder; an artifact holds "
                                "its own files — copy them in (cp -L) or re-export")
        if not f.is_file():
            raise ArtifactError(f"{where}: file '{name}' listed in the manifest is missing; "
                                "copy the whole artifact folder or re-export it")
    _check_format_files(manifest, where)
    _check_loaded_files(root, manifest, where)
    if verify_hashes:
        for name in manifest.files:
            digest = sha256_file(root / name)
            if digest != manifest.sha256[name].lower():
                raise ArtifactError(
                    f"{where}: sha256 of '{name}' is {digest[:16]}…, manifest says "
                    f"{manifest.sha256[name][:16]}…; the file was changed or corrupted — re-copy or re-export")
    info = inspect_model(root / manifest.model_file)
    check_model_against_manifest(manifest, info, where)
    return Artifact(path=root, manifest=manifest, model_info=info)


def _check_format_files(m: Manifest, where: str) -> None:
    suffixes = {Path(f).suffix for f in m.files}
    need = ARTIFACT_FORMATS[m.format].suffixes
    if not set(need) <= suffixes:
        raise ArtifactError(f"{where}: format {m.format!r} needs {' and '.join(f'a {s} file' for s in need)} in "
                            f"'files', got {list(m.files)}")


def weights_file(m: Manifest) -> str | None:
    """The listed weights file the backend must read beside the model (``<stem>.bin`` of an IR)."""
    return ARTIFACT_FORMATS[m.format].weights_file(m.model_file)


def onnx_external_data(path: Path) -> list[str]:
    """File names an ONNX model's tensors keep their data in (``external_data`` ``location``
    entries), read from the protobuf bytes: a runtime-only install has no ``onnx`` package. The
    entry is a ``StringStringEntryProto`` {1: "location", 2: <name>}, encoded exactly so."""
    raw = path.read_bytes()
    key = b"\n\x08location\x12"
    names, i = [], raw.find(key)
    while i >= 0:
        j, length, shift = i + len(key), 0, 0
        while j < len(raw):  # varint length of the value
            byte = raw[j]
            length |= (byte & 0x7F) << shift
            j, shift = j + 1, shift + 7
            if not byte & 0x80:
                break
        names.append(raw[j : j + length].decode("utf-8", "replace"))
        i = raw.find(key, j + length)
    return sorted(set(names))


def _check_loaded_files(root: Path, m: Manifest, where: str) -> None:
    """Every byte a backend will read must be a listed (hashed) file: OpenVINO reads ``<stem>.bin``
    beside the .xml whatever the manifest lists, ONNX Runtime reads external data by the names in
    the model."""
    listed = set(m.files)
    needed = [w] if (w := weights_file(m)) else []
    if m.model_file.endswith(".onnx"):
        needed += onnx_external_data(root / m.model_file)
    for name in needed:
        if name not in listed:
            raise ArtifactError(f"{where}: the model reads '{name}', which the manifest does not list (so its "
                                "bytes are not hashed); re-export the artifact")


def check_model_against_manifest(m: Manifest, info: ModelInfo, where: str) -> None:
    """Names, shapes, dtypes, precision and quality mode: manifest vs the model file."""
    names_in = [t.name for t in info.inputs]
    names_out = [t.name for t in info.outputs]
    image = info.input(m.input.name)
    if image is None:
        raise ArtifactError(f"{where}: manifest input '{m.input.name}' is not a model input (model has "
                            f"{names_in}); re-export or fix 'input.name'")
    if info.output(m.output.name) is None:
        raise ArtifactError(f"{where}: manifest output '{m.output.name}' is not a model output (model has "
                            f"{names_out}); re-export or fix 'output.name'")
    if image.dtype != "float32":
        raise ArtifactError(f"{where}: model input '{image.name}' is {image.dtype}, manifest says float32")
    if image.shape is not None:
        if len(image.shape) != 4:
            raise ArtifactError(f"{where}: model input '{image.name}' has rank {len(image.shape)} "
                                f"{list(image.shape)}; expected NCHW")
        if image.shape[1] not in (None, 3):
            raise ArtifactError(f"{where}: model input '{image.name}' has {image.shape[1]} channels; expected 3 (RGB)")
        model_hw = image.shape[2:]
        if m.input.size is None and any(d is not None for d in model_hw):
            raise ArtifactError(f"{where}: manifest says dynamic input size but the model input is "
                                f"{list(image.shape)}; set input.size to {list(model_hw)} or re-export dynamic")
        if m.input.size is not None:
            for want, got, axis in zip(m.input.size, model_hw, "HW", strict=True):
                if got is not None and got != want:
                    raise ArtifactError(f"{where}: manifest input size {list(m.input.size)} but the model "
                                        f"input is {list(image.shape)} ({axis} differs); re-export")
    extra_inputs = [n for n in names_in if n != m.input.name]
    q = m.quality
    if q.is_input:
        qt = info.input(q.input_name or "")
        if qt is None:
            raise ArtifactError(f"{where}: quality mode 'input' names input '{q.input_name}' but the model "
                                f"inputs are {names_in}; re-export with the condition kept as an input")
        if qt.dtype != "float32" or (qt.shape is not None and len(qt.shape) != 1):
            raise ArtifactError(f"{where}: quality input '{qt.name}' must be float32 [1], model has "
                                f"{qt.dtype} {list(qt.shape or [])}")
        extra_inputs.remove(qt.name)
        if not (0 <= float(q.default) <= q.levels - 1):
            raise ArtifactError(f"{where}: quality default {q.default} is outside [0, {q.levels - 1}]")
    elif extra_inputs:
        raise ArtifactError(f"{where}: quality mode 'folded' but the model has extra inputs {extra_inputs}; "
                            "set quality.mode to 'input' or re-export with the condition folded")
    if extra_inputs:
        raise ArtifactError(f"{where}: model has inputs {extra_inputs} the manifest does not describe")

    quant = sorted(info.quant_ops)
    if m.precision == "int8" and not quant:
        raise ArtifactError(f"{where}: manifest says int8 but the model has no quantize ops; the INT8 "
                            "export did not happen — re-export with --int8 or fix 'precision'")
    if m.precision in ("fp32", "fp16") and quant:
        raise ArtifactError(f"{where}: manifest says {m.precision} but the model contains {quant}; "
                            "set 'precision' to int8 or re-export")
    if m.precision == "fp16" and not info.has_fp16:
        raise ArtifactError(f"{where}: manifest says fp16 but the model holds no float16 weights; "
                            "re-export with fp16 compression or fix 'precision'")
    if ARTIFACT_FORMATS[m.format].quantized_graph and not quant:
        raise ArtifactError(f"{where}: format {m.format!r} but the model has no QuantizeLinear/DequantizeLinear")

    mirrored = info.metadata.get(METADATA_KEY)
    if mirrored is not None:
        try:
            mirror = json.loads(mirrored)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{where}: ONNX metadata '{METADATA_KEY}' is not JSON; re-export") from exc
        current = m.to_dict()
        for key in MIRROR_CHECKED_KEYS:
            if key in mirror and mirror[key] != current.get(key):
                raise ArtifactError(f"{where}: manifest.json '{key}' differs from the copy inside the ONNX "
                                    f"({current.get(key)!r} vs {mirror[key]!r}); the manifest was edited — re-export")


# --------------------------------------------------------------------------- model inspection
def inspect_model(model_path: Path) -> ModelInfo:
    """Read inputs/outputs/op types from an ONNX or OpenVINO IR file without running it."""
    if model_path.suffix == ".xml":
        return _inspect_openvino(model_path)
    try:
        import onnx  # noqa: F401
    except ImportError:
        return _inspect_onnx_via_ort(model_path)
    return _inspect_onnx(model_path)


_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 2: "uint8", 3: "int8",
                6: "int32", 7: "int64", 9: "bool"}


def _inspect_onnx(path: Path) -> ModelInfo:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({one_line(exc)}); re-export") from exc
    g = model.graph
    init_names = {i.name for i in g.initializer}

    def info(v) -> TensorInfo:
        tt = v.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                          for d in tt.shape.dim)
        return TensorInfo(v.name, shape, _ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)))

    ops: set[str] = set()
    has_fp16 = any(i.data_type == 10 for i in g.initializer)

    def walk(graph) -> None:
        nonlocal has_fp16
        for node in graph.node:
            ops.add(node.op_type)
            for a in node.attribute:
                if a.name == "to" and a.i == 10:
                    has_fp16 = True
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub)

    walk(g)
    return ModelInfo(
        inputs=tuple(info(v) for v in g.input if v.name not in init_names),
        outputs=tuple(info(v) for v in g.output), op_types=frozenset(ops), has_fp16=has_fp16,
        metadata={p.key: p.value for p in model.metadata_props})


def _inspect_onnx_via_ort(path: Path) -> ModelInfo:
    """Fallback without the ``onnx`` package: IO from ONNX Runtime (else OpenVINO), op names from
    the raw bytes (op type strings are stored verbatim in the protobuf)."""
    from qt_runtime import telemetry

    telemetry.disable()
    try:
        import onnxruntime as ort
    except ImportError:
        try:
            import openvino  # noqa: F401  (an OpenVINO-only install reads ONNX too)
        except ImportError as exc:
            raise ArtifactError(f"{path}: reading an ONNX artifact needs 'onnx', 'onnxruntime' or 'openvino'; "
                                "pip install 'qualiteacher-edge[runtime]'") from exc
        return _inspect_openvino(path)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactError(f"{path}: ONNX Runtime cannot read the model ({one_line(exc)}); re-export") from exc

    def info(a) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in a.shape) if a.shape is not None else None
        dtype = a.type.removeprefix("tensor(").removesuffix(")")
        return TensorInfo(a.name, shape, {"float": "float32", "float16": "float16", "double": "float64"}.get(dtype, dtype))

    raw = path.read_bytes()
    ops = frozenset(op for op in QUANT_OPS if op.encode() in raw)
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    # Without the proto we cannot see initializer types; a Cast-to-fp16 or fp16 weights are likely
    # present in an fp16 model, so do not fail the fp16 check on this path.
    return ModelInfo(tuple(info(a) for a in sess.get_inputs()), tuple(info(a) for a in sess.get_outputs()),
                     ops, has_fp16=True, metadata=meta)


def _inspect_openvino(path: Path) -> ModelInfo:
    from qt_runtime import telemetry

    telemetry.disable()
    try:
        import openvino as ov
    except ImportError as exc:
        raise ArtifactError(f"{path}: OpenVINO IR artifact needs 'openvino'; pip install openvino") from exc
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path}: OpenVINO cannot read the IR ({one_line(exc)}); re-export") from exc

    def info(port) -> TensorInfo:
        ps = port.get_partial_shape()
        shape = None if ps.rank.is_dynamic else tuple(
            d.get_length() if d.is_static else None for d in ps)
        return TensorInfo(port.get_any_name(), shape, _ov_dtype(port.get_element_type()))

    ops = set()
    has_fp16 = False
    for op in model.get_ops():
        ops.add(op.get_type_name())
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "f16":
            has_fp16 = True
    meta: dict[str, str] = {}
    return ModelInfo(tuple(info(p) for p in model.inputs), tuple(info(p) for p in model.outputs),
                     frozenset(ops), has_fp16, meta)


def _ov_dtype(t) -> str:
    return {"f32": "float32", "f16": "float16", "f64": "float64", "bf16": "bfloat16", "u8": "uint8",
            "i8": "int8", "i32": "int32", "i64": "int64"}.get(t.get_type_name(), t.get_type_name())


# --------------------------------------------------------------------------- ONNX metadata mirror
def mirror_into_onnx(onnx_path: str | os.PathLike[str], manifest: Manifest | Mapping[str, Any]) -> None:
    """Copy the manifest (minus ``sha256``) into the ONNX ``metadata_props`` so the model carries it.

    Call before hashing: it rewrites the ONNX file (atomically). Other metadata keys are kept.
    """
    import onnx

    d = dict(manifest.to_dict() if isinstance(manifest, Manifest) else manifest)
    d.pop("sha256", None)
    path = Path(onnx_path)
    model = onnx.load(str(path), load_external_data=False)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for k, v in [*kept, (METADATA_KEY, json.dumps(d, sort_keys=True))]:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    atomic_write_bytes(path, model.SerializeToString())


def read_onnx_metadata(onnx_path: str | os.PathLike[str]) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (the mirrored manifest is under :data:`METADATA_KEY`)."""
    return dict(inspect_model(Path(onnx_path)).metadata)


def read_mirrored_manifest(onnx_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest dict mirrored into an ONNX file, or None if it carries none."""
    raw = read_onnx_metadata(onnx_path).get(METADATA_KEY)
    return None if raw is None else json.loads(raw)
