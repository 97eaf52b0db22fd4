"""Bounded fuzzing of the loaders: whatever the bytes, the project's own one-line error, never a
traceback, a hang or a memory blow-up.

Each property runs a fixed number of examples with a deadline (hypothesis, derandomised so that
CI is reproducible); the counts are part of the reliability figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from qt_runtime.manifest import ArtifactError, Manifest  # noqa: E402

FUZZ = settings(max_examples=400, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

VALID = {
    "schema_version": 1, "toolkit_version": "0.1.0", "arch": "edge_guided", "task": "dehaze", "format": "openvino",
    "target": "cpu", "files": ["model.xml", "model.bin"], "sha256": {"model.xml": "a" * 64, "model.bin": "b" * 64},
    "input": {"name": "input", "layout": "NCHW", "color": "RGB", "range": [0, 1], "dtype": "float32", "size": None,
              "multiple": 16},
    "output": {"name": "output", "layout": "NCHW", "color": "RGB", "range": [0, 1], "dtype": "float32"},
    "precision": "int8", "quality": {"mode": "folded", "levels": 8, "level": 7},
    "calibration": {"hash": "0123456789abcdef", "frames": 56, "source": "clip"},
    "gate": {"passed": True, "psnr_vs_fp32": 39.7, "score_drop": -0.03, "bounds": {"min_psnr": 38.0}},
    "created": "2026-12-01T00:00:00+00:00",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, (*prefix, k))


PATHS = [p for p in _paths(VALID) if p]


def _mutate(base: dict, path: tuple, value, delete: bool) -> dict:
    d = json.loads(json.dumps(base))
    node = d
    for key in path[:-1]:
        node = node[key]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return d


def test_the_valid_manifest_parses() -> None:
    assert Manifest.from_dict(VALID).quality.level == 7


@FUZZ
@given(path=st.sampled_from(PATHS), value=json_values, delete=st.booleans())
def test_mutated_manifest_fields_give_the_projects_error(path, value, delete) -> None:
    d = _mutate(VALID, path, value, delete)
    try:
        m = Manifest.from_dict(d)
    except ArtifactError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    # accepted: then it must mean something sane
    assert m.input.multiple >= 1 and 0 <= float(m.quality.level if m.quality.level is not None else 0) <= 7
    assert m.precision != "int8" or m.calibration is not None
    assert all(math.isfinite(v) for v in (*m.input.range, *m.output.range))


@FUZZ
@given(doc=json_values)
def test_any_json_document_gives_the_projects_error(doc) -> None:
    try:
        Manifest.from_dict(doc)
    except ArtifactError as exc:  # the only exception allowed out
        assert str(exc)


@pytest.mark.parametrize("case,match", [
    ({"quality": {"mode": "folded", "levels": 8, "level": 99}}, "quality.level"),
    ({"input": {**VALID["input"], "multiple": -8}}, "input.multiple"),
    ({"calibration": None}, "calibration"),
    ({"gate": {"passed": "yes"}}, "gate"),
    ({"sha256": {"model.xml": "zz", "model.bin": "b" * 64}}, "64 hex"),
])
def test_meaning_is_checked(case, match) -> None:
    with pytest.raises(ArtifactError, match=match):
        Manifest.from_dict({**VALID, **case})


def test_deeply_nested_manifest_file_is_an_error(tmp_path: Path) -> None:
    from qt_runtime.manifest import read_manifest

    (tmp_path / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match="not readable JSON"):
        read_manifest(tmp_path)


@settings(max_examples=150, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".webp"]))
def test_arbitrary_bytes_as_an_image_are_a_read_error(tmp_path_factory, data, suffix) -> None:
    from qt_train.data.io import ImageReadError, read_image

    path = tmp_path_factory.mktemp("img") / f"x{suffix}"
    path.write_bytes(data)
    try:
        img = read_image(path)
    except ImageReadError as exc:
        assert "\n" not in str(exc)
        return
    assert img.ndim == 3 and img.shape[2] == 3 and np.isfinite(img).all()


@settings(max_examples=150, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400))
def test_arbitrary_yaml_config_is_a_value_error(tmp_path_factory, text) -> None:
    from qt_train.schema import load_run_config

    path = tmp_path_factory.mktemp("cfg") / "run.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_run_config(path)
    except (ValueError, FileNotFoundError) as exc:
        assert str(exc)


# Damage: (kind, seed). "flip" sets up to 16 random bytes, "trunc" cuts the file short, "zero"
# blanks a 256-byte run — the ways a file breaks on a flaky SD card or a half-finished copy.
damage = st.tuples(st.sampled_from(["flip", "trunc", "zero"]), st.integers(0, 2**32 - 1))


def _damaged(data: bytes, kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    if kind == "flip":
        for _ in range(int(rng.integers(1, 17))):
            out[int(rng.integers(len(out)))] = int(rng.integers(256))
    elif kind == "trunc":
        out = out[: int(rng.integers(len(out)))]
    else:
        at = int(rng.integers(len(out)))
        out[at : at + 256] = bytes(len(out[at : at + 256]))
    return bytes(out)


@pytest.fixture(scope="module")
def model_artifacts(tmp_path_factory):
    from tests.runtime_models import make_onnx_artifact

    root = tmp_path_factory.mktemp("models")
    return {fmt: make_onnx_artifact(root / fmt, size=(32, 32), fmt=fmt) for fmt in ("onnx", "openvino")}


@settings(max_examples=60, deadline=10_000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["onnx", "openvino"]), which=st.integers(0, 1), hurt=damage)
def test_damaged_model_files_give_the_projects_error(tmp_path_factory, model_artifacts, fmt, which, hurt) -> None:
    """A damaged ONNX / IR file whose hash was updated to match (so the parsers, not the hash
    check, meet the bytes): the project's ArtifactError, or a model that loads and runs."""
    import hashlib
    import shutil

    from qt_runtime.artifact import load_artifact
    from qt_runtime.backends import open_backend

    art = tmp_path_factory.mktemp("art") / fmt
    shutil.copytree(model_artifacts[fmt], art)
    manifest = json.loads((art / "manifest.json").read_text())
    name = manifest["files"][which % len(manifest["files"])]
    data = _damaged((art / name).read_bytes(), *hurt)
    (art / name).write_bytes(data)
    manifest["sha256"][name] = hashlib.sha256(data).hexdigest()
    (art / "manifest.json").write_text(json.dumps(manifest))
    try:
        backend = open_backend(load_artifact(art))
    except ArtifactError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    y = backend.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert y.shape == (1, 3, 32, 32)


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> bytes:
    import cv2

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write((rng.random((48, 64, 3)) * 255).astype(np.uint8))
    writer.release()
    return path.read_bytes()


@settings(max_examples=120, deadline=5000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(hurt=damage)
def test_damaged_videos_give_frames_or_the_projects_error(tmp_path_factory, small_clip, hurt) -> None:
    """A damaged mp4 as qt-run's file source: RGB frames of the clip's size, or SourceError."""
    from qt_runtime.sources import SourceError, SourceOptions, open_source

    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    path.write_bytes(_damaged(small_clip, *hurt))
    try:
        with open_source(str(path), SourceOptions(max_corrupt_run=5)) as source:
            frames = [f for _, f in zip(range(40), source.frames(), strict=False)]
    except SourceError as exc:
        assert str(exc)
        return
    assert len(frames) <= 20
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
