"""qt_runtime core: manifest, artifact verification, ONNX Runtime / OpenVINO backends, tiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qt_core.hashing import hash_files, sha256_file
from qt_runtime import ArtifactError, load_artifact, open_backend, read_manifest, write_manifest
from qt_runtime.artifact import METADATA_KEY, mirror_into_onnx, read_mirrored_manifest, read_onnx_metadata
from qt_runtime.backends import BACKENDS, BackendUnavailableError, InputError, default_backend
from qt_runtime.manifest import Manifest
from qt_runtime.tiling import axis_starts, fit_to_input, restore_from_input, tile_infer
from tests.runtime_models import (
    ACT_SCALE,
    conv_weights,
    make_onnx_artifact,
    make_onnx_model,
    reference_forward,
)

REPO = Path(__file__).resolve().parents[1]


def _batch(n=2, h=16, w=24, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, h, w), dtype=np.float32)


def _edit_manifest(art: Path, **changes) -> None:
    d = json.loads((art / "manifest.json").read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = d
        for p in parents:
            node = node[p]
        node[leaf] = value
    (art / "manifest.json").write_text(json.dumps(d))


def _rehash(art: Path) -> None:
    d = json.loads((art / "manifest.json").read_text())
    d["sha256"] = hash_files(art, d["files"])
    (art / "manifest.json").write_text(json.dumps(d))


def _swap_onnx(art: Path, **model_kw) -> None:
    import onnx

    onnx.save(make_onnx_model(**model_kw), str(art / "model.onnx"))
    _rehash(art)


@pytest.fixture(scope="module")
def arts(tmp_path_factory) -> dict[str, Path]:
    """Shared read-only artifacts (tests that modify one make their own)."""
    root = tmp_path_factory.mktemp("arts")
    return {
        "onnx": make_onnx_artifact(root / "onnx"),
        "onnx_q": make_onnx_artifact(root / "onnx_q", quality_input=True),
        "qdq": make_onnx_artifact(root / "qdq", fmt="onnx_qdq"),
        "ov": make_onnx_artifact(root / "ov", fmt="openvino"),
        "ov_q": make_onnx_artifact(root / "ov_q", fmt="openvino", quality_input=True),
        "ov_static": make_onnx_artifact(root / "ov_static", size=(16, 24), fmt="openvino", batch=1),
    }


# ----------------------------------------------------------------------------- manifest
def test_manifest_round_trip(tmp_path, arts):
    m = read_manifest(arts["onnx_q"])
    assert m.quality.is_input and m.quality.input_name == "quality" and m.input.size is None
    d = m.to_dict()
    d["future_note"] = {"kept": True}
    again = Manifest.from_dict(d)
    assert again.to_dict() == d
    write_manifest(tmp_path, again)
    assert read_manifest(tmp_path / "manifest.json") == again
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file
    assert m.sha256["model.onnx"] == sha256_file(arts["onnx_q"] / "model.onnx")


def test_load_artifact_ok(arts):
    a = load_artifact(arts["ov_static"])
    assert a.model_path.name == "model.xml" and a.image_batch == 1 and not a.is_qdq
    assert load_artifact(arts["qdq"]).is_qdq


def test_newer_schema_says_upgrade(tmp_path):
    art = make_onnx_artifact(tmp_path / "a")
    _edit_manifest(art, schema_version=2)
    with pytest.raises(ArtifactError, match="upgrade qualiteacher-edge"):
        load_artifact(art)


def test_missing_file_is_named(tmp_path):
    art = make_onnx_artifact(tmp_path / "a", fmt="openvino")
    (art / "model.bin").unlink()
    with pytest.raises(ArtifactError, match="'model.bin'.*missing"):
        load_artifact(art)


def test_hash_mismatch_is_named(tmp_path):
    art = make_onnx_artifact(tmp_path / "a")
    with open(art / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256 of 'model.onnx'"):
        load_artifact(art)


@pytest.mark.parametrize("case, match", [
    ("static_model_dynamic_manifest", "manifest says dynamic input size"),
    ("size_differs", r"manifest input size \[32, 32\]"),
    ("input_name", "manifest input 'image' is not a model input"),
    ("output_name", "manifest output 'restored' is not a model output"),
    ("bad_format", "'format' is 'tflite'"),
    ("missing_key", "'arch' is missing"),
])
def test_shape_and_name_mismatches(tmp_path, case, match):
    art = make_onnx_artifact(tmp_path / "a", size=(16, 16) if case != "static_model_dynamic_manifest" else None)
    if case == "static_model_dynamic_manifest":
        _swap_onnx(art, size=(16, 16))
    elif case == "size_differs":
        _edit_manifest(art, **{"input.size": [32, 32]})
    elif case == "input_name":
        _edit_manifest(art, **{"input.name": "image"})
    elif case == "output_name":
        _edit_manifest(art, **{"output.name": "restored"})
    elif case == "bad_format":
        _edit_manifest(art, format="tflite")
    else:
        d = json.loads((art / "manifest.json").read_text())
        del d["arch"]
        (art / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match=match):
        load_artifact(art)


def test_precision_mismatches(tmp_path):
    fp32 = make_onnx_artifact(tmp_path / "fp32")
    calibration = {"hash": "0" * 16, "frames": 8, "source": "tests"}
    _edit_manifest(fp32, precision="int8")
    with pytest.raises(ArtifactError, match="int8 artifact must record its 'calibration'"):
        load_artifact(fp32)
    _edit_manifest(fp32, calibration=calibration)
    with pytest.raises(ArtifactError, match="int8 but the model has no quantize ops"):
        load_artifact(fp32)
    _edit_manifest(fp32, precision="fp16")
    with pytest.raises(ArtifactError, match="fp16 but the model holds no float16"):
        load_artifact(fp32)
    qdq = make_onnx_artifact(tmp_path / "qdq", fmt="onnx_qdq")
    _edit_manifest(qdq, precision="fp32")
    with pytest.raises(ArtifactError, match=r"fp32 but the model contains \['DequantizeLinear', 'QuantizeLinear'\]"):
        load_artifact(qdq)
    ov = make_onnx_artifact(tmp_path / "ov", fmt="openvino")
    _edit_manifest(ov, precision="int8", calibration=calibration)
    with pytest.raises(ArtifactError, match="no quantize ops"):
        load_artifact(ov)


def test_quality_mode_mismatches(tmp_path):
    folded = make_onnx_artifact(tmp_path / "folded")
    _edit_manifest(folded, quality={"mode": "input", "input_name": "quality", "default": 7, "levels": 8})
    with pytest.raises(ArtifactError, match="quality mode 'input' names input 'quality'"):
        load_artifact(folded)
    kept = make_onnx_artifact(tmp_path / "kept", quality_input=True, fmt="openvino")
    _edit_manifest(kept, quality={"mode": "folded", "level": 7, "levels": 8})
    with pytest.raises(ArtifactError, match="'folded' but the model has extra inputs"):
        load_artifact(kept)


def test_onnx_metadata_mirror(tmp_path):
    art = make_onnx_artifact(tmp_path / "a")
    m = read_manifest(art)
    mirror_into_onnx(art / "model.onnx", m)
    _rehash(art)
    assert METADATA_KEY in read_onnx_metadata(art / "model.onnx")
    assert "sha256" not in read_mirrored_manifest(art / "model.onnx")
    load_artifact(art)
    _edit_manifest(art, arch="other_net")
    with pytest.raises(ArtifactError, match="'arch' differs from the copy inside the ONNX"):
        load_artifact(art)


# ----------------------------------------------------------------------------- backends
@pytest.mark.parametrize("key, backend", [("onnx", "onnxruntime"), ("onnx", "openvino"), ("ov", "openvino"),
                                          ("qdq", "onnxruntime"), ("qdq", "openvino")])
def test_backend_matches_numpy_reference(arts, key, backend):
    x = _batch()
    with open_backend(load_artifact(arts[key]), backend) as be:
        y = be.infer(x)
        assert be.describe()["backend"] == backend
    ref = reference_forward(x, qdq=key == "qdq")
    if key != "qdq":
        np.testing.assert_allclose(y, ref, atol=1e-5)
        return
    # A backend may quantise the input by multiplying with 1/scale (OpenVINO on AVX2 does) where the
    # reference divides: values within a rounding error of a half step then land one INT8 step
    # apart. One flipped input moves an output by |w| * step, so the bound is one step times the
    # L1 norm of an output channel's weights (every input of its window flipped), and such values
    # must be rare (measured: 5 of 2304 on an AVX2-only CPU, none with AVX-512).
    w, _ = conv_weights()
    bound = ACT_SCALE * np.abs(w).reshape(3, -1).sum(1).max() + 1e-5
    err = np.abs(y - ref)
    assert err.max() <= bound, (err.max(), bound)
    assert (err > 1e-5).mean() <= 0.01, (err > 1e-5).mean()


@pytest.mark.parametrize("key, backend", [("onnx_q", "onnxruntime"), ("ov_q", "openvino")])
def test_quality_input_honoured(arts, key, backend):
    x = _batch(1) * 0.5 + 0.2  # away from the clip so the shift shows everywhere
    with open_backend(load_artifact(arts[key]), backend) as be:
        assert be.input_spec.quality_input == "quality" and be.input_spec.quality_default == 7
        y_default, y2, y5 = be.infer(x), be.infer(x, quality=2), be.infer(x, quality=5.5)
        with pytest.raises(InputError, match="outside"):
            be.infer(x, quality=9)
    np.testing.assert_allclose(y_default, reference_forward(x, 7), atol=1e-5)
    np.testing.assert_allclose(y5, reference_forward(x, 5.5), atol=1e-5)
    assert np.abs(y5 - y2).mean() > 0.02


def test_folded_rejects_other_quality(arts):
    with open_backend(load_artifact(arts["onnx"])) as be:
        be.infer(_batch(1), quality=7)
        with pytest.raises(InputError, match="folded at level 7"):
            be.infer(_batch(1), quality=3)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_dynamic_size_reshape(arts, backend):
    with open_backend(load_artifact(arts["onnx"]), backend) as be:
        for n, h, w in [(1, 16, 24), (2, 32, 8), (1, 16, 24)]:
            x = _batch(n, h, w, seed=h)
            np.testing.assert_allclose(be.infer(x), reference_forward(x), atol=1e-5)


def test_input_validation(arts):
    with open_backend(load_artifact(arts["ov_static"])) as be:
        spec = be.input_spec
        assert spec.size == (16, 24) and spec.batch == 1
        with pytest.raises(InputError, match="float32"):
            be.infer(_batch(1).astype(np.float64))
        with pytest.raises(InputError, match="exactly 16x24"):
            be.infer(_batch(1, 16, 16))
        with pytest.raises(InputError, match="exactly 1"):
            be.infer(_batch(2))
        with pytest.raises(InputError, match="divide by 255"):
            be.infer(_batch(1) * 255)
        with pytest.raises(InputError, match="N x 3 x H x W"):
            be.infer(np.zeros((1, 16, 24, 3), np.float32))
    with open_backend(load_artifact(arts["onnx"])) as be, pytest.raises(InputError, match="multiple of 8"):
        be.infer(_batch(1, 15, 24))
    be.close()
    with pytest.raises(RuntimeError, match="closed"):
        be.infer(_batch(1))


def test_openvino_async_queue(arts):
    xs = [_batch(1, 16, 24, seed=i) for i in range(5)]
    results: dict[int, np.ndarray] = {}
    with open_backend(load_artifact(arts["ov_q"]), "openvino", hint="THROUGHPUT", num_requests=2) as be:
        for i, x in enumerate(xs):
            be.infer_async(x, quality=i, callback=lambda out, k: results.__setitem__(k, out), userdata=i)
        be.wait_all()
        assert sorted(results) == list(range(5))
        for i, x in enumerate(xs):
            np.testing.assert_allclose(results[i], reference_forward(x, i), atol=1e-5)

        def boom(out, k):
            raise RuntimeError("sink failed")

        be.infer_async(xs[0], callback=boom)
        with pytest.raises(RuntimeError, match="sink failed"):
            be.wait_all()


def _frames(n=1, h=16, w=24, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _frames_reference(frames: np.ndarray, quality=None, rng=(0.0, 1.0), bgr=False) -> np.ndarray:
    """What infer_frames must return, computed the slow obvious way in float64 numpy."""
    lo, hi = rng
    x = frames[..., ::-1] if bgr else frames
    x = x.transpose(0, 3, 1, 2).astype(np.float64) / 255 * (hi - lo) + lo
    y = reference_forward(x.astype(np.float32), quality).astype(np.float64)
    y = np.clip((y - lo) / (hi - lo), 0, 1).transpose(0, 2, 3, 1)
    return np.rint((y[..., ::-1] if bgr else y) * 255)


@pytest.mark.parametrize("key, backend, quality", [("onnx", "onnxruntime", None), ("onnx", "openvino", None),
                                                   ("ov", "openvino", None), ("ov_q", "openvino", 3.5),
                                                   ("onnx_q", "onnxruntime", 3.5)])
def test_infer_frames_matches_reference(arts, key, backend, quality):
    """uint8 frames in, uint8 frames out, on every backend (OpenVINO converts inside the model)."""
    with open_backend(load_artifact(arts[key]), backend) as be:
        for n, h, w in [(1, 16, 24), (2, 32, 8)]:
            frames = _frames(n, h, w, seed=h)
            out = be.infer_frames(frames, quality)
            assert out.dtype == np.uint8 and out.shape == frames.shape
            # within one level of the float reference: the two sides may round a tie differently
            assert np.abs(out - _frames_reference(frames, quality)).max() <= 1


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_infer_frames_applies_manifest_range_and_channel_order(tmp_path, backend):
    """A model trained on BGR in [-1, 1]: the frame API must map bytes both ways as the manifest says."""
    art = make_onnx_artifact(tmp_path / "bgr", fmt="onnx")
    _edit_manifest(art, **{"input.range": [-1.0, 1.0], "input.color": "BGR",
                           "output.range": [-1.0, 1.0], "output.color": "BGR"})
    frames = _frames(1, 16, 24, seed=5)
    with open_backend(load_artifact(art), backend) as be:
        out = be.infer_frames(frames)
    assert np.abs(out - _frames_reference(frames, rng=(-1.0, 1.0), bgr=True)).max() <= 1


def test_infer_frames_validation_and_async(arts):
    with open_backend(load_artifact(arts["ov_static"])) as be:
        with pytest.raises(InputError, match="uint8"):
            be.infer_frames(_frames(1).astype(np.float32))
        with pytest.raises(InputError, match="N x H x W x 3"):
            be.infer_frames(np.zeros((1, 3, 16, 24), np.uint8))
        with pytest.raises(InputError, match="exactly 16x24"):
            be.infer_frames(_frames(1, 16, 16))
    results: dict[int, np.ndarray] = {}
    frames = [_frames(1, 16, 24, seed=i) for i in range(5)]
    with open_backend(load_artifact(arts["ov_q"]), "openvino", hint="THROUGHPUT", num_requests=2) as be:
        for i, f in enumerate(frames):
            be.infer_frames_async(f, quality=i, callback=lambda out, k: results.__setitem__(k, out), userdata=i)
        be.infer_async(_batch(1), quality=1)  # switching between the two model forms mid-stream is fine
        be.wait_all()
    assert sorted(results) == list(range(5))
    for i, f in enumerate(frames):
        assert np.abs(results[i] - _frames_reference(f, i)).max() <= 1


def test_default_async_and_backend_table(arts):
    assert set(BACKENDS) == {"openvino", "onnxruntime", "tensorrt"}
    got = []
    with open_backend(load_artifact(arts["onnx"])) as be:
        assert be.name == "onnxruntime" and be.providers == ["CPUExecutionProvider"]
        be.infer_async(_batch(1), callback=lambda out, k: got.append((out.shape, k)), userdata="a")
        be.wait_all()
    assert got == [((1, 3, 16, 24), "a")]
    assert default_backend(load_artifact(arts["ov"])) == "openvino"
    assert default_backend(load_artifact(arts["onnx"])) == "onnxruntime"
    with pytest.raises(ValueError, match="cannot run a 'openvino' artifact"):
        open_backend(load_artifact(arts["ov"]), "onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        open_backend(load_artifact(arts["ov"]), "coreml")


def test_unavailable_devices_are_clear(arts):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
            open_backend(load_artifact(arts["onnx"]), "onnxruntime", device="CUDA")
    with pytest.raises(BackendUnavailableError, match="not found"):
        open_backend(load_artifact(arts["ov"]), "openvino", device="NPU")
    with open_backend(load_artifact(arts["onnx"]), "onnxruntime", intra_op_threads=1) as be:
        assert be.infer(_batch(1)).shape == (1, 3, 16, 24)


# ----------------------------------------------------------------------------- TensorRT without a GPU
def test_qdq_runs_on_ort_and_engine_build_needs_tensorrt(arts, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed; the gpu tests cover building")
    except ImportError:
        pass
    from qt_runtime.engine_build import build_engine, build_engine_cli

    a = load_artifact(arts["qdq"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= a.model_info.quant_ops
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        build_engine(arts["qdq"])
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        open_backend(a, "tensorrt")
    with pytest.raises(ArtifactError, match="built from ONNX artifacts"):
        build_engine(arts["ov"])
    assert build_engine_cli([str(arts["qdq"])]) == 2
    assert default_backend(a) == "onnxruntime"


def test_engine_naming_and_profiles(arts):
    from qt_runtime.engine_build import engine_filename, image_profile, parse_shape

    assert engine_filename("10.7.0.post1", "NVIDIA GeForce RTX 4090") == "model.10.7.0.post1.nvidia-geforce-rtx-4090.engine"
    assert parse_shape("1x3x720x1280") == (1, 3, 720, 1280)
    lo, opt, hi = image_profile(load_artifact(arts["onnx"]), None, None, None)
    assert lo == (1, 3, 64, 64) and hi == (1, 3, 1088, 1920)
    assert image_profile(load_artifact(arts["ov_static"]), None, None, None) is None
    with pytest.raises(ValueError, match="multiples of 8"):
        image_profile(load_artifact(arts["onnx"]), (1, 3, 60, 64), None, None)


# ----------------------------------------------------------------------------- tiling
def _frame(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


@pytest.mark.parametrize("hw, tile, overlap", [((100, 130), (32, 48), 8), ((37, 41), (16, 16), 4),
                                               ((20, 10), (32, 32), 8), ((64, 64), (64, 64), 16)])
def test_tile_identity_exact(hw, tile, overlap):
    f = _frame(*hw)
    calls = []
    out = tile_infer(f, lambda b: calls.append(b.shape) or b, tile, overlap=overlap, batch=3)
    assert out.shape == f.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, f, atol=1e-6)
    assert all(c[0] <= 3 and c[2:] == tile for c in calls)


def test_tile_constant_and_pointwise_have_no_seams():
    f = _frame(90, 70, seed=3)
    const = tile_infer(f, lambda b: np.full_like(b, 0.25), (32, 32), overlap=8)
    np.testing.assert_allclose(const, 0.25, atol=1e-6)
    gamma = tile_infer(f, lambda b: np.sqrt(b) * 0.9 + 0.05, (32, 32), overlap=8, batch=2)
    np.testing.assert_allclose(gamma, np.sqrt(f) * 0.9 + 0.05, atol=1e-6)


def test_tile_conv_model_close_to_full_frame_and_fixed_batch():
    f = _frame(40, 56, seed=4)
    full = reference_forward(f.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    sizes = []

    def fn(b):
        sizes.append(b.shape[0])
        return reference_forward(b)

    tiled = tile_infer(f, fn, (24, 24), overlap=8, batch=4, fixed_batch=True)
    assert set(sizes) == {4}
    # Away from tile borders the 3x3 conv sees the same context; the blend hides the rest.
    assert np.abs(tiled - full).max() < 0.05 and np.abs(tiled - full).mean() < 2e-3


def test_tiling_argument_errors():
    with pytest.raises(ValueError, match="overlap"):
        tile_infer(_frame(8, 8), lambda b: b, (8, 8), overlap=8)
    with pytest.raises(ValueError, match="size-preserving"):
        tile_infer(_frame(8, 8), lambda b: b[:, :, :4], (8, 8), overlap=2)
    assert axis_starts(100, 32, 8) == [0, 23, 45, 68]


@pytest.mark.parametrize("policy", ["resize", "letterbox", "pad", "tile"])
def test_fit_and_restore_round_trip(policy):
    h, w = (30, 50) if policy != "pad" else (30, 20)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.dstack([yy / h, xx / w, (yy + xx) / (h + w)]).astype(np.float32)  # smooth: resizing keeps it
    x, p = fit_to_input(f, (32, 32) if policy != "tile" else None, policy)
    if policy != "tile":
        assert x.shape == (32, 32, 3)
    back = restore_from_input(x, p)
    assert back.shape == f.shape
    if policy in ("pad", "tile"):
        np.testing.assert_array_equal(back, f)
    else:
        assert np.abs(back - f).mean() < 0.02


def test_fit_letterbox_and_multiple():
    f = np.ones((20, 40, 3), np.float32)
    x, p = fit_to_input(f, (40, 40), "letterbox", pad_value=0.0)
    assert p.content == (10, 0, 20, 40) and x[:10].max() == 0 and x[10:30].min() == 1
    y, q = fit_to_input(_frame(30, 41), None, "pad", multiple=8)
    assert y.shape == (32, 48, 3) and q.content == (0, 0, 30, 41)
    with pytest.raises(ValueError, match="larger than the model input"):
        fit_to_input(_frame(40, 40), (32, 32), "pad")


# ----------------------------------------------------------------------------- torch-free
def test_runtime_never_imports_torch(arts):
    code = f"""
import sys, numpy as np
import qt_runtime, qt_runtime.backends, qt_runtime.tiling, qt_runtime.engine_build
assert 'onnxruntime' not in sys.modules and 'openvino' not in sys.modules, 'backend imported eagerly'
x = np.random.default_rng(0).random((1, 3, 16, 24), dtype=np.float32)
for path, backend in [({str(arts['onnx'])!r}, 'onnxruntime'), ({str(arts['ov'])!r}, 'openvino'),
                      ({str(arts['onnx'])!r}, 'openvino')]:
    with qt_runtime.open_backend(qt_runtime.load_artifact(path), backend) as be:
        be.infer(x)
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pyiqa', 'qt_train', 'qt_export', 'calibration'))
assert not bad, bad
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_onnx_inspection_without_onnx_package(arts, tmp_path, monkeypatch):
    art = make_onnx_artifact(tmp_path / "a", fmt="onnx_qdq")
    _edit_manifest(art, precision="fp32")
    monkeypatch.setitem(sys.modules, "onnx", None)  # "import onnx" now raises ImportError
    assert load_artifact(arts["qdq"]).is_qdq
    a = load_artifact(arts["onnx_q"])
    assert a.model_info.input("quality").shape == (1,) and a.model_info.input("input").shape == (None, 3, None, None)
    with pytest.raises(ArtifactError, match="fp32 but the model contains"):
        load_artifact(art)


def test_tiles_through_a_static_backend(arts):
    f = np.random.default_rng(5).random((40, 50, 3), dtype=np.float32)
    with open_backend(load_artifact(arts["ov_static"])) as be:
        out = tile_infer(f, be.infer, be.input_spec.size, overlap=8, batch=be.input_spec.batch, fixed_batch=True)
    full = reference_forward(f.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    assert out.shape == f.shape and np.abs(out - full).mean() < 5e-3


def test_openvino_telemetry_is_off_unless_opted_in(tmp_path):
    """`import openvino` starts a telemetry client that writes ~/intel and sends events; every
    project path that loads OpenVINO turns it off first (QT_OPENVINO_TELEMETRY=1 opts in)."""
    pytest.importorskip("openvino")
    probe = ("import sys; from pathlib import Path; from qt_runtime.artifact import ArtifactError, _inspect_openvino\n"
             "try: _inspect_openvino(Path(sys.argv[1]))\nexcept ArtifactError: pass\n")
    plain = "import openvino; openvino.Core()"
    for code, opt_in, home in ((probe, None, "project"), (plain, None, "plain"), (probe, "1", "opted-in")):
        # as on a user's box: the telemetry client stays quiet by itself under CI variables
        quiet = ("OPENVINO_TELEMETRY_OPT_OUT", "QT_OPENVINO_TELEMETRY", "CI", "TF_BUILD", "JENKINS_URL")
        env = {k: v for k, v in os.environ.items() if k not in quiet}
        env.update(HOME=str(tmp_path / home), PYTHONPATH=str(REPO))
        if opt_in:
            env["QT_OPENVINO_TELEMETRY"] = opt_in
        (tmp_path / home).mkdir()
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing.xml")], env=env, check=True,
                       capture_output=True, timeout=120)
    assert not (tmp_path / "project" / "intel").exists()
    assert (tmp_path / "plain" / "intel").exists()  # what the library does by itself
    assert (tmp_path / "opted-in" / "intel").exists()


# ----------------------------------------------------------------------------- bytes bound to the manifest
def test_openvino_weights_beside_a_listed_decoy_are_refused(tmp_path):
    """OpenVINO reads <stem>.bin beside the .xml whatever the manifest lists: a tampered model.bin
    next to a hashed decoy ran with exit 0. The .bin it reads must be the listed one."""
    import dataclasses

    art = make_onnx_artifact(tmp_path / "a", fmt="openvino")
    (art / "decoy.bin").write_bytes((art / "model.bin").read_bytes())
    with open(art / "model.bin", "r+b") as fh:  # tamper with the weights OpenVINO would load
        fh.seek(64)
        fh.write(b"\x7f" * 16)
    m = read_manifest(art)
    files = tuple("decoy.bin" if f == "model.bin" else f for f in m.files)
    write_manifest(art, dataclasses.replace(m, files=files, sha256={f: sha256_file(art / f) for f in files}))
    with pytest.raises(ArtifactError, match="reads 'model.bin', which the manifest does not list"):
        load_artifact(art)


def test_listed_file_that_is_a_symlink_is_refused(tmp_path):
    art = make_onnx_artifact(tmp_path / "a")
    outside = tmp_path / "elsewhere.onnx"
    (art / "model.onnx").rename(outside)
    (art / "model.onnx").symlink_to(outside)
    with pytest.raises(ArtifactError, match="is a link or lies outside the folder"):
        load_artifact(art)


def test_unlisted_onnx_external_data_is_refused(tmp_path):
    """ONNX Runtime loads external tensor data by the file names inside the model; a model whose
    weights live in an unlisted file is refused (its bytes would not be hashed)."""
    onnx = pytest.importorskip("onnx")
    art = make_onnx_artifact(tmp_path / "a")
    model = onnx.load(str(art / "model.onnx"))
    onnx.save_model(model, str(art / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=0)
    _rehash(art)
    from qt_runtime.artifact import onnx_external_data

    assert onnx_external_data(art / "model.onnx") == ["weights.data"]
    with pytest.raises(ArtifactError, match="reads 'weights.data'"):
        load_artifact(art)


def test_tensorrt_engine_bytes_are_checked_against_their_sidecar(tmp_path, arts):
    """`engine_sha256` was written at build time but never checked: a swapped engine ran."""
    import hashlib

    from qt_runtime.backends.tensorrt_backend import check_engine

    art = load_artifact(arts["qdq"])
    m = art.manifest
    data = b"serialized engine bytes"
    facts = {"engine_sha256": hashlib.sha256(data).hexdigest(), "source_sha256": m.sha256[m.model_file]}
    check_engine(tmp_path / "model.engine", data, facts, art)
    with pytest.raises(ArtifactError, match="sha256 differs"):
        check_engine(tmp_path / "model.engine", data + b"!", facts, art)
    with pytest.raises(ArtifactError, match="built from a different"):
        check_engine(tmp_path / "model.engine", data, {**facts, "source_sha256": "0" * 64}, art)
