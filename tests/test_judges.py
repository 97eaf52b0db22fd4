"""Judges the project never fits: the LIVE-trained BRISQUE (reproduces the brisque package's own
scores) and NIQE with the original pristine model; the CPU description benchmarks print."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from calibration.brisque_convert import main as convert_main
from calibration.niqe_fit import package_photo
from qt_train.iqa import brisque_live


def _package_score(img: np.ndarray) -> float:
    """The package's own features, scaling and libsvm model, without its broken ``score()`` path."""
    import skimage.color
    from brisque import BRISQUE
    from libsvm import svmutil

    obj = BRISQUE(url=False)
    grey = skimage.color.rgb2gray(img)
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = list(obj.calculate_brisque_features(grey, 7, 7 / 6)) + list(obj.calculate_brisque_features(half, 7, 7 / 6))
    flat = [float(np.ravel(f)[0]) for f in feats]  # the package mixes scalars and 1-element arrays
    x, _ = svmutil.gen_svm_nodearray([float(v) for v in obj.scale_features(np.array(flat))], isKernel=False)
    return float(svmutil.libsvm.svm_predict(obj.model, x))


def _photos() -> list[np.ndarray]:
    img = (package_photo("chelsea") * 255).round().astype(np.uint8)[:160, :224]
    _, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 10])
    return [img, cv2.GaussianBlur(img, (0, 0), 2.5), cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)]


def test_shipped_asset_matches_the_package(tmp_path):
    """Scores of the committed asset equal the package's to float precision: the same float64
    operations in the same order, so only the SVR's sum over support vectors is reordered."""
    for img in _photos():
        assert brisque_live.score(img) == pytest.approx(_package_score(img), rel=1e-9, abs=1e-9)


def test_conversion_reproduces_asset(tmp_path):
    out = tmp_path / "b.npz"
    assert convert_main(["--out", str(out)]) == 0
    fresh, shipped = brisque_live.load_model(out), brisque_live.load_model()
    np.testing.assert_array_equal(fresh.support_vectors, shipped.support_vectors)
    np.testing.assert_array_equal(fresh.coef, shipped.coef)
    assert (fresh.rho, fresh.gamma) == (shipped.rho, shipped.gamma)
    with np.load(out, allow_pickle=False) as z:  # a plain archive: no object arrays
        assert all(z[k].dtype != object for k in z.files)


def test_ranks_distortions_like_human_opinion():
    clean, blurred, jpeg = (brisque_live.score(i) for i in _photos())
    assert clean < blurred and clean < jpeg


def test_metric_on_tensors_and_bad_input():
    img = _photos()[0]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    metric = brisque_live.BrisqueLive()
    out = metric(torch.cat([x, x]))
    assert tuple(out.shape) == (2,)
    assert float(out[0]) == pytest.approx(brisque_live.score(img), rel=1e-6)  # a float32 tensor
    with pytest.raises(ValueError, match="RGB"):
        brisque_live.features(img[..., 0])
    with pytest.raises(ValueError, match="at least 16x16"):
        brisque_live.features(img[:8, :8])
    with pytest.raises(FileNotFoundError, match="brisque_convert"):
        brisque_live.load_model("/nonexistent/brisque.npz")


# ----------------------------------------------------------------------------- NIQE, original model
def test_niqe_original_asset_loads_in_pyiqa_and_ranks_blur():
    import json

    import pyiqa

    from calibration import niqe_original

    meta = json.loads(niqe_original.ASSET.with_suffix(".json").read_text())
    assert meta["source_sha256"] == niqe_original.PINNED_SHA256
    metric = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(niqe_original.ASSET))
    img = package_photo("chelsea")
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    xb = torch.from_numpy(np.ascontiguousarray(cv2.GaussianBlur(img, (0, 0), 2).transpose(2, 0, 1)))[None]
    clean, blurred = float(metric(x)), float(metric(xb))
    assert 1.5 < clean < 6.0 and blurred > clean + 1.0  # a sharp photo scores ~2-4 with the published model


def test_niqe_original_conversion_refuses_other_files(tmp_path, capsys):
    from calibration import niqe_original

    fake = tmp_path / "niqe_pris_params.npz"
    np.savez(fake, mu_pris_param=np.zeros((1, 36)), cov_pris_param=np.eye(36))
    with pytest.raises(ValueError, match="not the published model"):
        niqe_original.main(["--source", str(fake), "--out", str(tmp_path / "out.mat")])
    assert not (tmp_path / "out.mat").exists()
    with pytest.raises(FileNotFoundError, match="source archive"):
        niqe_original.main(["--source", str(tmp_path / "missing.tar.gz")])


# ----------------------------------------------------------------------------- the CPU benchmarks print
def test_machine_description_classes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "machine.py"
    spec = importlib.util.spec_from_file_location("bench_machine", path)
    machine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(machine)  # the benchmarks' entry point, over qt_core/machine.py
    epyc = "model name\t: AMD EPYC 7B13\nflags\t\t: sse avx avx2 fma bmi2\n"
    assert machine.read_cpu(epyc) == ("AMD EPYC 7B13", {"sse", "avx", "avx2", "fma", "bmi2"})
    assert "class AVX2 " in machine.describe_machine(epyc) and "ISA: avx2 fma" in machine.describe_machine(epyc)
    assert machine.cpu_class({"avx2", "avx512f", "avx512_vnni", "amx_int8"}) == "AMX"
    assert machine.cpu_class({"avx2", "avx512f", "avx512_vnni"}) == "AVX-512 VNNI"
    assert machine.cpu_class(set()) == "other"


def test_brisque_live_as_an_ensemble_member() -> None:
    """The same model as an ensemble member (from the project-metric table, not pyiqa): its raw
    scores are the judge's, and it refuses to be marked differentiable."""
    from qt_train.iqa import Ensemble
    from qt_train.iqa.spec import EnsembleSpec, Member

    member = Member("brisque_live", 1.0, "lower", (0.0, 80.0), min_size=16)
    ensemble = Ensemble(EnsembleSpec(members=(member,), levels=8, thresholds=None, block=144), device="cpu")
    x = torch.from_numpy(np.stack(_photos()[:2]).transpose(0, 3, 1, 2).copy()).float() / 255
    want = [brisque_live.score(img) for img in _photos()[:2]]
    np.testing.assert_allclose(ensemble.score(x).raw["brisque_live"].numpy(), want, rtol=1e-5)
    with pytest.raises(ValueError, match="not differentiable"):
        Ensemble(EnsembleSpec(members=(Member("brisque_live", 1.0, "lower", (0.0, 80.0), differentiable=True),),
                              levels=8, thresholds=None, block=144), device="cpu")
