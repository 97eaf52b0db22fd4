"""qt-run verify: the export gate's frames travel with the artifact and are re-run on the device.

The export host's parity with FP32 does not hold on every CPU (INT8 OpenVINO outputs differ
between an AMX Xeon and an AVX2 EPYC), so ``qt-run verify ARTIFACT`` re-runs the stored gate
frames through the normal hash-checked loader and backend and applies the bounds the gate
recorded. Artifacts are real ``qt-export`` outputs of a tiny checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qt_core.hashing import hash_files
from qt_runtime.cli import main as qt_run
from qt_runtime.manifest import ArtifactError, Manifest, QualityInfo, read_manifest, write_manifest
from qt_runtime.verify import GATE_FRAMES, check_parity, cpu_info, read_gate_frames
from tests.runtime_models import make_onnx_artifact
from tests.test_export import _save_tiny

REPO = Path(__file__).resolve().parents[1]
SIZE = ["--size", "128x96", "--gate-frames", "3"]


def _export(ckpt: Path, out: Path, *extra: str) -> Path:
    from qt_export.cli import main as qt_export

    assert qt_export([str(ckpt), "--target", "cpu", *SIZE, "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("verify")
    ckpt = _save_tiny(d / "a.ckpt", seed=0)
    other = _save_tiny(d / "b.ckpt", seed=1)
    return {"art": _export(ckpt, d / "art"), "other": _export(other, d / "other"), "ckpt": ckpt}


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_fresh_export_carries_its_gate_frames_and_verifies(exported, capsys) -> None:
    import qt_runtime

    art = qt_runtime.load_artifact(exported["art"])
    m = art.manifest
    assert GATE_FRAMES in m.files and len(m.sha256[GATE_FRAMES]) == 64  # listed and hashed like the model
    frames = read_gate_frames(art)
    assert frames.inputs.shape == (3, 3, 96, 128) and frames.reference.shape == (3, 3, 96, 128)
    assert (exported["art"] / GATE_FRAMES).stat().st_size < 400_000  # 3 small frames, not a data set
    # the stored inputs are the gate's synthetic frames, bit for bit
    from qt_export.export import _nchw, synthetic_frames

    assert np.array_equal(frames.inputs, _nchw(synthetic_frames(3, (96, 128), 0)))

    assert qt_run(["verify", str(exported["art"])]) == 0
    out, err = capsys.readouterr()
    line = _one_line(out)
    assert line.startswith("qt-run verify: passed:") and "3 gate frames" in line and "bounds 38 / 30 dB" in line
    assert cpu_info()["model"] in line and err == ""

    assert qt_run(["verify", str(exported["art"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["frames"] == 3 and result["backend"] == "openvino"
    assert result["bounds"] == {"min_psnr": 38.0, "min_frame_psnr": 30.0}
    # same machine, same backend: the export host's numbers, reproduced
    assert abs(result["psnr_mean"] - result["host_psnr_mean"]) < 0.01 and result["psnr_min"] > 60
    assert isinstance(result["cpu"]["isa"], list)


@pytest.mark.slow
def test_fresh_int8_export_verifies(exported, tmp_path: Path, capsys) -> None:
    """INT8 is what drifts between CPUs: its held-out gate frames (never calibration frames) are
    stored, and re-running them on the export host reproduces what the gate measured."""
    import cv2

    from qt_export.export import synthetic_frames

    calib = tmp_path / "calib"
    calib.mkdir()
    for i, f in enumerate(synthetic_frames(16, (120, 160), seed=5)):
        cv2.imwrite(str(calib / f"{i:02d}.png"), f)
    art = _export(exported["ckpt"], tmp_path / "int8", "--int8", "--calib", str(calib), "--calib-frames", "12",
                  "--no-calib-iqa", "--min-psnr", "20", "--min-frame-psnr", "15", "--max-score-drop", "0.5")
    assert read_manifest(art).precision == "int8"
    capsys.readouterr()  # the export's own output
    assert qt_run(["verify", str(art), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["passed"] and r["precision"] == "int8" and r["frames"] == 3
    assert r["bounds"] == {"min_psnr": 20.0, "min_frame_psnr": 15.0}
    assert abs(r["psnr_mean"] - r["host_psnr_mean"]) < 0.05


def test_swapped_weights_that_still_load_fail_verify(exported, tmp_path: Path, capsys) -> None:
    """Another valid model of the same shape, with the manifest re-hashed: every load-time check
    passes and qt-run would run it (its gate says passed); only re-running the gate frames sees
    that it is not the model the gate measured."""
    import qt_runtime

    art = shutil.copytree(exported["art"], tmp_path / "swapped")
    for name in ("model.xml", "model.bin"):
        shutil.copy2(exported["other"] / name, art / name)
    m = read_manifest(art)
    write_manifest(art, dataclasses.replace(m, sha256=hash_files(art, m.files)))
    loaded = qt_runtime.load_artifact(art)  # hashes, names, shapes: all fine
    assert loaded.manifest.gate is not None and loaded.manifest.gate.passed

    assert qt_run(["verify", str(art)]) == 1
    out, err = capsys.readouterr()
    assert _one_line(out).startswith("qt-run verify: FAILED:")
    line = _one_line(err)
    assert line.startswith("qt-run verify: error:") and "breaks its export gate on this device" in line
    assert "do not run it here" in line and "re-export" in line and "dB" in line


def test_changed_gate_frames_are_caught_by_their_hash(exported, tmp_path: Path, capsys) -> None:
    art = shutil.copytree(exported["art"], tmp_path / "edited")
    with np.load(art / GATE_FRAMES) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["reference"] = np.clip(arrays["reference"] * np.float16(0.5), 0, 1).astype(np.float16)
    np.savez_compressed(art / GATE_FRAMES, **arrays)  # a reference that would make any model "fail"
    assert qt_run(["verify", str(art)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"sha256 of '{GATE_FRAMES}'" in line and "re-copy or re-export" in line


def test_artifact_without_gate_frames_is_refused(tmp_path: Path, capsys) -> None:
    """An artifact written before gate frames were stored: nothing to re-run, say so."""
    old = make_onnx_artifact(tmp_path / "old", size=(32, 48))
    assert qt_run(["verify", str(old)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("qt-run verify: error:") and "carries no gate frames" in line
    assert "re-export it with qt-export" in line


def test_bad_invocations_are_one_line_errors(exported, tmp_path: Path, capsys) -> None:
    assert qt_run(["verify", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in _one_line(capsys.readouterr().err)
    assert qt_run(["verify", str(exported["art"]), "--backend", "onnxruntime"]) == 2
    assert "cannot run a 'openvino' artifact" in _one_line(capsys.readouterr().err)
    assert qt_run(["verify"]) == 2
    assert "qt-run verify --help" in _one_line(capsys.readouterr().err)


@pytest.mark.skipif(not {"avx512_bf16", "amx_bf16"} & set(cpu_info()["isa"]), reason="needs a CPU with BF16")
def test_other_kernels_on_this_cpu_are_held_to_the_recorded_bounds(exported, tmp_path: Path, capsys) -> None:
    """The same artifact run with other kernels (bf16 on this CPU) drifts from what the export host
    measured; with bounds that f32 meets and bf16 does not, verify passes f32 and fails bf16."""
    art = _export(exported["ckpt"], tmp_path / "tight", "--min-psnr", "70", "--min-frame-psnr", "70")
    capsys.readouterr()  # the export's own output
    assert qt_run(["verify", str(art), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["psnr_min"] > 70
    assert qt_run(["verify", str(art), "--precision", "bf16", "--json"]) == 1
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert not result["passed"] and result["inference_precision"] == "bf16" and result["psnr_mean"] < 70
    assert "below 70 dB" in _one_line(err) or "< 70 dB" in err


def test_the_gate_and_verify_share_one_check() -> None:
    """Mean, every frame, non-finite: the gate's reasons are check_parity's, word for word."""
    from qt_export.gate import GateBounds, evaluate

    rng = np.random.default_rng(0)
    ref = rng.random((4, 3, 24, 32), dtype=np.float32)
    broken = ref + rng.normal(0, 1e-3, ref.shape).astype(np.float32)
    broken[1] = broken[1][::-1]  # channel swap in one frame
    broken[2, 0, 0, 0] = np.nan
    parity = check_parity(ref, broken, 38.0, 30.0)
    assert not parity.passed and parity.non_finite == 1
    assert any("frame 2" in r or "frame 1" in r for r in parity.reasons)
    assert any("non-finite" in r for r in parity.reasons)
    assert evaluate(ref, broken, GateBounds(), None).reasons == parity.reasons


def test_manifest_states_its_own_quality_level(exported) -> None:
    """The level is the artifact's (the run's top level, written by the export), never a default
    restated in the runtime; a manifest without it is refused."""
    m = read_manifest(exported["art"])
    assert m.quality.level == m.extra["top_level"] == 7
    assert {f.name: f.default for f in dataclasses.fields(QualityInfo)}["level"] is None
    d = m.to_dict()
    del d["quality"]["level"]
    with pytest.raises(ArtifactError, match="quality.level"):
        Manifest.from_dict(d)


def test_verify_never_imports_torch(exported) -> None:
    code = f"""
import sys
from qt_runtime.cli import main
assert main(['verify', {str(exported['art'])!r}]) == 0
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pyiqa', 'nncf', 'qt_train', 'qt_export', 'calibration'))
assert not bad, bad
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
