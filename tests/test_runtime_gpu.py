"""TensorRT engine build + backend. Needs an NVIDIA GPU, TensorRT 10 and cuda-python.

Skipped elsewhere by the ``gpu`` marker logic in conftest.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from qt_runtime import ArtifactError, load_artifact, open_backend
from qt_runtime.backends import default_backend
from tests.runtime_models import make_onnx_artifact, reference_forward

pytestmark = pytest.mark.gpu

SMALL = {"min_shape": (1, 3, 16, 16), "opt_shape": (2, 3, 32, 32), "max_shape": (4, 3, 64, 64)}


def _batch(n=2, h=32, w=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, h, w), dtype=np.float32)


def test_build_fp16_engine_and_run(tmp_path):
    from qt_runtime.engine_build import build_engine, engine_path, sidecar_path

    art = make_onnx_artifact(tmp_path / "a")
    cache = tmp_path / "timing.cache"
    eng = build_engine(art, timing_cache=cache, workspace_gb=1, **SMALL)
    assert eng == engine_path(art) and eng.is_file() and cache.stat().st_size > 0
    side = json.loads(sidecar_path(eng).read_text())
    assert side["strongly_typed"] is False and side["precision_flags"] == ["FP16"]
    assert side["profile"]["input"] == [[1, 3, 16, 16], [2, 3, 32, 32], [4, 3, 64, 64]]
    assert not eng.read_bytes().startswith(b"{")  # no metadata glued in front of the engine
    with open_backend(load_artifact(art), "tensorrt") as be:
        for n, h, w in [(1, 16, 16), (2, 32, 48), (4, 64, 64)]:
            x = _batch(n, h, w, seed=h)
            np.testing.assert_allclose(be.infer(x), reference_forward(x), atol=5e-3)
        with pytest.raises(ValueError, match="optimisation profile"):
            be.infer(_batch(1, 128, 128))
    # The timing cache is reused on a rebuild.
    build_engine(art, timing_cache=cache, workspace_gb=1, **SMALL)


def test_qdq_engine_is_strongly_typed_and_default(tmp_path):
    from qt_runtime.engine_build import build_engine, sidecar_path

    art = make_onnx_artifact(tmp_path / "q", fmt="onnx_qdq", quality_input=True)
    eng = build_engine(art, workspace_gb=1, **SMALL)
    side = json.loads(sidecar_path(eng).read_text())
    assert side["strongly_typed"] is True and side["precision_flags"] == []
    a = load_artifact(art)
    assert default_backend(a) == "tensorrt"
    with open_backend(a) as be:
        x = _batch(2, 32, 32)
        y3, y6 = be.infer(x, quality=3), be.infer(x, quality=6)
    np.testing.assert_allclose(y3, reference_forward(x, 3, qdq=True), atol=2e-2)
    assert np.abs(y6 - y3).mean() > 0.01


def test_static_engine_async(tmp_path):
    from qt_runtime.engine_build import build_engine

    art = make_onnx_artifact(tmp_path / "s", size=(32, 32), batch=1)
    build_engine(art, fp16=False, workspace_gb=1)
    xs = [_batch(1, 32, 32, seed=i) for i in range(6)]
    got: dict[int, np.ndarray] = {}
    with open_backend(load_artifact(art), "tensorrt", num_streams=2) as be:
        for i, x in enumerate(xs):
            be.infer_async(x, callback=lambda out, k: got.__setitem__(k, out), userdata=i)
        be.wait_all()
    assert sorted(got) == list(range(6))
    for i, x in enumerate(xs):
        np.testing.assert_allclose(got[i], reference_forward(x), atol=1e-4)


def test_engine_runs_uint8_frames_sync_and_async(tmp_path):
    """infer_frames on TensorRT (the base class's OpenCV conversion around the engine's async path)."""
    from qt_runtime.engine_build import build_engine

    art = make_onnx_artifact(tmp_path / "f", size=(32, 32), batch=1)
    build_engine(art, fp16=False, workspace_gb=1)
    frames = [np.random.default_rng(i).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8) for i in range(4)]
    got: dict[int, np.ndarray] = {}
    with open_backend(load_artifact(art), "tensorrt", num_streams=2) as be:
        sync = be.infer_frames(frames[0])
        for i, f in enumerate(frames):
            be.infer_frames_async(f, callback=lambda out, k: got.__setitem__(k, out), userdata=i)
        be.wait_all()
    for i, f in enumerate(frames):
        ref = reference_forward(f.transpose(0, 3, 1, 2).astype(np.float32) / 255).transpose(0, 2, 3, 1)
        assert got[i].dtype == np.uint8 and np.abs(got[i] - np.rint(ref * 255)).max() <= 1
    assert np.array_equal(sync, got[0])


def test_engine_must_match_artifact(tmp_path):
    from qt_runtime.engine_build import build_engine, sidecar_path

    art = make_onnx_artifact(tmp_path / "m", size=(32, 32), batch=1)
    with pytest.raises(ArtifactError, match="build-engine"):
        open_backend(load_artifact(art), "tensorrt")
    eng = build_engine(art, workspace_gb=1)
    side = sidecar_path(eng)
    facts = json.loads(side.read_text())
    facts["source_sha256"] = "0" * 64
    side.write_text(json.dumps(facts))
    with pytest.raises(ArtifactError, match="different model.onnx"):
        open_backend(load_artifact(art), "tensorrt")
