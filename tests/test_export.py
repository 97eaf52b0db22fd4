"""qt-export: format table refusals, FP32 round trips, quality folding, gate, manifest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qt_export.cli import main
from qt_export.formats import FORMATS, Request, UnsupportedOption, resolve

WIDTHS = (8, 16, 16)


def _save_tiny(path: Path, arch: str = "edge_unet", seed: int = 0) -> Path:
    import torch

    from qt_core.config import to_dict
    from qt_train.checkpoint import save_checkpoint
    from qt_train.models import build_backbone
    from qt_train.schema import RunConfig

    torch.manual_seed(seed)
    model = build_backbone("edge_unet", widths=WIDTHS)
    with torch.no_grad():  # a non-zero embedding, so folding and interpolation are visible
        model.quality_embed.embed.weight.normal_(0.0, 0.5)
    sd = model.state_dict()
    save_checkpoint(path, {"arch": arch, "arch_config": to_dict(model.config), "task": "dehaze",
                           "model": sd, "ema": sd, "config": to_dict(RunConfig(task="dehaze"))})
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _frames(n: int = 2, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    from qt_export.export import synthetic_frames

    return synthetic_frames(n, (h, w), seed).astype(np.float32).transpose(0, 3, 1, 2) / 255.0


# ---------------------------------------------------------------- the format table


def test_defaults_per_target() -> None:
    assert resolve(Request("cpu")).name == "openvino"
    assert resolve(Request("cpu", int8=True)).name == "openvino"
    assert resolve(Request("jetson")).name == "onnx"
    assert resolve(Request("jetson", int8=True)).name == "onnx_qdq"
    assert resolve(Request("desktop-gpu", format="tensorrt", int8=True)).name == "onnx_qdq"
    assert set(FORMATS) == {"openvino", "onnx", "onnx_qdq"}


def test_cli_defaults_are_the_option_dataclasses() -> None:
    """qt-export's flags restate no default: parsed with none given, they give ``ExportOptions()``."""
    from qt_export.cli import build_parser, options_from_args
    from qt_export.export import ExportOptions

    opts = options_from_args(build_parser().parse_args(["x.ckpt", "--target", "cpu"]))
    assert opts == ExportOptions(checkpoint=Path("x.ckpt"), target="cpu")


def test_quality_input_traces_at_the_artifacts_level() -> None:
    """A quality input is traced at the artifact's default level, which no default restates."""
    import torch

    from qt_export.formats import ExportSettings
    from qt_export.onnx_export import example_inputs

    x = torch.zeros(1, 3, 8, 8)
    assert len(example_inputs(x, ExportSettings())) == 1
    assert float(example_inputs(x, ExportSettings(quality_input=True, quality=5.0))[1]) == 5.0
    with pytest.raises(ValueError, match="default level"):
        example_inputs(x, ExportSettings(quality_input=True))


@pytest.mark.parametrize(
    ("req", "match"),
    [
        (Request("jetson", format="openvino"), "runs on cpu"),
        (Request("cpu", qat=True), "add --int8"),
        (Request("jetson", int8=True, dynamic=True), "fixed --size"),
        (Request("cpu", format="tensorrt"), "not --target cpu"),
        (Request("jetson", format="onnx_qdq"), "INT8 only"),
        (Request("cpu", int8=True, quality_input=True), "folds the quality"),
        (Request("cpu", format="coreml"), "unknown format"),
    ],
)
def test_refused_combinations(req: Request, match: str) -> None:
    with pytest.raises(UnsupportedOption, match=match):
        resolve(req)


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "jetson", "--format", "openvino"],
        ["--target", "cpu", "--qat"],
        ["--target", "jetson", "--int8", "--dynamic", "--calib", "x"],
        ["--target", "cpu", "--int8"],  # no --calib
        ["--target", "cpu", "--keep-fp", "middle"],
    ],
)
def test_cli_refuses_before_work(args, tiny_ckpt: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import qt_export.checkpoint_view as checkpoint_view

    monkeypatch.setattr(checkpoint_view, "load_model", lambda *a, **k: pytest.fail("work started"))
    out = tmp_path / "art"
    assert main([str(tiny_ckpt), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qt-export: error:")
    assert not out.exists()


def test_checkpoint_with_unknown_arch_option_is_refused(tmp_path: Path, capsys) -> None:
    """A checkpoint from another toolkit version: its unknown option is named, nothing is written."""
    from qt_train.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(_save_tiny(tmp_path / "a.ckpt"))
    state["arch_config"]["attention_heads"] = 4
    save_checkpoint(tmp_path / "b.ckpt", state)
    out = tmp_path / "art"
    assert main([str(tmp_path / "b.ckpt"), "--target", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "attention_heads" in err[0] and not out.exists()


# ---------------------------------------------------------------- FP32 round trips


def test_onnx_fp32_matches_pytorch(tiny_ckpt: Path, tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    from qt_export.checkpoint_view import QualityMode, export_view, load_model
    from qt_export.formats import ExportSettings
    from qt_export.onnx_export import export_onnx

    loaded = load_model(tiny_ckpt)
    view = export_view(loaded, QualityMode("folded", loaded.top_level))
    x = _frames()
    for dynamic in (False, True):
        path = export_onnx(view, tmp_path / f"m{int(dynamic)}.onnx", torch.from_numpy(x[:1]),
                           ExportSettings(dynamic=dynamic))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(["output"], {"input": x})[0]
        with torch.no_grad():
            ref = view(torch.from_numpy(x)).numpy()
        assert np.abs(got - ref).max() < 1e-4
    # dynamic H, W (a multiple of 8 other than the export size)
    y = _frames(1, 64, 72)
    got = sess.run(["output"], {"input": y})[0]
    with torch.no_grad():
        assert np.abs(got - view(torch.from_numpy(y)).numpy()).max() < 1e-4


def test_openvino_fp32_matches_pytorch(tiny_ckpt: Path, tmp_path: Path) -> None:
    import openvino as ov
    import torch

    from qt_export.checkpoint_view import QualityMode, export_view, load_model
    from qt_export.formats import ExportSettings
    from qt_export.openvino_export import export_openvino_artifact

    loaded = load_model(tiny_ckpt)
    view = export_view(loaded, QualityMode("folded", loaded.top_level))
    x = _frames()
    files = export_openvino_artifact(view, tmp_path, torch.from_numpy(x[:1]), ExportSettings())
    assert files == ["model.xml", "model.bin"]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(tmp_path / "model.xml")), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    got = np.concatenate([compiled({"input": x[i : i + 1]})["output"] for i in range(len(x))])
    with torch.no_grad():
        ref = view(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() < 1e-4


# ---------------------------------------------------------------- quality: folded vs input


def _write_artifact(loaded, mode: str, fmt: str, folder: Path, x: np.ndarray) -> Path:
    """Export + manifest without the gate (the gate has its own tests)."""
    import torch

    from qt_export import artifact_writer as aw
    from qt_export.checkpoint_view import QualityMode, export_view
    from qt_export.formats import FORMATS, ExportSettings

    folder.mkdir()
    settings = ExportSettings(quality_input=mode == "input", quality=loaded.top_level)
    view = export_view(loaded, QualityMode(mode, loaded.top_level))
    files = FORMATS[fmt].export_fn(view, folder, torch.from_numpy(x[:1]), settings)
    aw.finalize(folder, aw.build_manifest(
        arch=loaded.arch, task=loaded.task, fmt=fmt, target="cpu", files=files, precision="fp32",
        quality=aw.quality_info(mode, loaded.top_level, loaded.levels), size=tuple(x.shape[-2:]), multiple=8))
    return folder


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_folded_equals_input_and_interpolates(fmt: str, tiny_ckpt: Path, tmp_path: Path) -> None:
    import torch

    import qt_runtime
    from qt_export.checkpoint_view import load_model

    loaded = load_model(tiny_ckpt)
    x = _frames(1)
    folded = qt_runtime.open_backend(qt_runtime.load_artifact(_write_artifact(loaded, "folded", fmt, tmp_path / "f", x)))
    keyed = qt_runtime.open_backend(qt_runtime.load_artifact(_write_artifact(loaded, "input", fmt, tmp_path / "i", x)))
    try:
        a = folded.infer(x)
        b = keyed.infer(x)  # the manifest's default level, 7
        c = keyed.infer(x, quality=7.0)
        assert np.abs(a - b).max() < 1e-5 and np.abs(a - c).max() < 1e-5
        with torch.no_grad():
            xt = torch.from_numpy(x)
            lo, hi, mid = (loaded.backbone(xt, quality=q).numpy() for q in (5, 6, 5.5))
        half = keyed.infer(x, quality=5.5)
        assert np.abs(half - mid).max() < 1e-4
        assert np.abs(lo - hi).max() > 1e-3  # the levels differ, so interpolation is a real test
        assert np.abs(half - lo).max() > 1e-4 and np.abs(half - hi).max() > 1e-4
    finally:
        folded.close()
        keyed.close()


# ---------------------------------------------------------------- CLI end to end: gate, manifest


def test_export_openvino_fp32_cli(tiny_ckpt: Path, tmp_path: Path) -> None:
    import qt_runtime

    out = tmp_path / "ov"
    assert main([str(tiny_ckpt), "--target", "cpu", "--size", "128x96", "--gate-frames", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.png", "gate_frames.npz", "manifest.json", "model.bin",
                                                     "model.xml", "report.json"]
    art = qt_runtime.load_artifact(out)  # verifies schema, sha256, names, shapes
    m = art.manifest
    assert (m.arch, m.task, m.format, m.precision, m.target) == ("edge_unet", "dehaze", "openvino", "fp32", "cpu")
    assert m.input.size == (96, 128) and m.quality.mode == "folded" and m.quality.level == 7
    assert m.gate is not None and m.gate.passed and m.gate.psnr_vs_fp32 > 60
    # the run's settings travel with the artifact: its top level (folded by default), its ensemble
    assert m.extra["top_level"] == 7 and m.extra["iqa_ensemble"] == "default" and "level_cuts" in m.extra
    from importlib.metadata import version

    assert m.toolkit_version == version("qualiteacher-edge")
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"] == "fp32" and report["candidates"]["fp32"]["passed"]
    # an existing folder is refused without --force, and kept intact
    before = (out / "manifest.json").read_bytes()
    assert main([str(tiny_ckpt), "--target", "cpu", "--size", "128x96", "--out", str(out)]) == 2
    assert (out / "manifest.json").read_bytes() == before


def test_export_onnx_mirrors_manifest(tiny_ckpt: Path, tmp_path: Path) -> None:
    import qt_runtime
    from qt_runtime.artifact import read_mirrored_manifest

    out = tmp_path / "onnx"
    assert main([str(tiny_ckpt), "--target", "jetson", "--quality-input", "--dynamic", "--size", "128x96",
                 "--gate-frames", "2", "--out", str(out)]) == 0
    art = qt_runtime.load_artifact(out)
    assert art.manifest.format == "onnx" and art.manifest.input.size is None
    assert art.manifest.quality.mode == "input" and art.manifest.quality.default == 7
    mirror = read_mirrored_manifest(out / "model.onnx")
    assert mirror is not None and mirror["arch"] == "edge_unet" and "sha256" not in mirror
    assert mirror["gate"]["passed"] is True


def test_gate_failure_writes_nothing(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    code = main([str(tiny_ckpt), "--target", "cpu", "--size", "128x96", "--gate-frames", "2",
                 "--min-psnr", "200", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "consistency gate failed" in err and "< 200 dB" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]  # no partial folder left


def test_interrupted_export_keeps_previous(tiny_ckpt: Path, tmp_path: Path, monkeypatch) -> None:
    import qt_export.gate as gate

    out = tmp_path / "art"
    assert main([str(tiny_ckpt), "--target", "cpu", "--size", "128x96", "--gate-frames", "2", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gate, "evaluate", interrupted)
    code = main([str(tiny_ckpt), "--target", "cpu", "--size", "64x64", "--gate-frames", "2", "--out", str(out),
                 "--force"])
    assert code == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_unknown_arch_and_missing_calib(tmp_path: Path, capsys) -> None:
    ckpt = _save_tiny(tmp_path / "odd.ckpt", arch="swin_mystery")
    assert main([str(ckpt), "--target", "cpu", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "swin_mystery" in err[0] and "edge_unet" in err[0]
    empty = tmp_path / "nothing"
    empty.mkdir()
    good = _save_tiny(tmp_path / "good.ckpt")
    assert main([str(good), "--target", "cpu", "--int8", "--calib", str(empty), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no images or videos" in err[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- INT8 end to end (NNCF)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    import cv2

    from qt_export.export import synthetic_frames

    d = tmp_path_factory.mktemp("calib")
    for i, f in enumerate(synthetic_frames(24, (120, 160), seed=5)):
        cv2.imwrite(str(d / f"{i:02d}.png"), f)
    return d


@pytest.mark.slow
def test_int8_openvino_ptq_and_qat(tiny_ckpt: Path, calib_dir: Path, tmp_path: Path) -> None:
    import qt_runtime

    out = tmp_path / "int8"
    code = main([str(tiny_ckpt), "--target", "cpu", "--int8", "--qat", "--qat-steps", "3", "--calib", str(calib_dir),
                 "--calib-frames", "16", "--gate-frames", "4", "--no-calib-iqa", "--size", "128x96",
                 "--min-psnr", "20", "--max-score-drop", "0.5", "--out", str(out)])
    assert code == 0
    art = qt_runtime.load_artifact(out)
    assert art.manifest.precision == "int8" and art.is_qdq  # FakeQuantize in the IR
    assert art.manifest.calibration is not None and art.manifest.calibration.frames >= 12
    report = json.loads((out / "report.json").read_text())
    assert set(report["candidates"]) == {"ptq", "qat"}
    assert report["chosen"] in ("ptq", "qat")


def test_edge_guided_dynamic_export_gated_at_sizes_off_its_stride(tmp_path: Path) -> None:
    """edge_guided pads to a multiple of 16; the gate fits 120x68 frames (not multiples) as qt-run
    does, so a dynamic export is gated at the size cameras deliver (1920x1080 is not a multiple of 16)."""
    import torch

    import qt_runtime
    from qt_core.config import to_dict
    from qt_export.gate import run_backend
    from qt_train.checkpoint import save_checkpoint
    from qt_train.models import build_backbone
    from qt_train.schema import RunConfig

    torch.manual_seed(0)
    model = build_backbone("edge_guided", head="haze", widths=(8, 8, 8), mid_blocks=1)
    with torch.no_grad():  # open the zero-initialised heads so the output depends on the weights
        model.maps[1].weight.normal_(0.0, 0.1)
        model.colour.weight.normal_(0.0, 0.1)
    sd = model.state_dict()
    ckpt = tmp_path / "guided.ckpt"
    save_checkpoint(ckpt, {"arch": "edge_guided", "arch_config": to_dict(model.config), "task": "dehaze",
                           "model": sd, "ema": sd, "config": to_dict(RunConfig(task="dehaze"))})
    out = tmp_path / "art"
    assert main([str(ckpt), "--target", "cpu", "--dynamic", "--size", "120x68", "--gate-frames", "2",
                 "--out", str(out)]) == 0
    art = qt_runtime.load_artifact(out)
    assert art.manifest.input.size is None and art.manifest.input.multiple == 16
    assert art.manifest.gate.passed and art.manifest.gate.psnr_vs_fp32 > 40
    frames = _frames(1, 68, 120)
    got = run_backend(out, frames)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(frames)).numpy()
    assert got.shape == want.shape
    # The runtime mirrors the frame out to 80x128; the model itself reflects inside: the smooth maps
    # differ slightly near the padded border, the image content is the same.
    assert np.abs(got - want).mean() < 5e-3


@pytest.mark.parametrize("fault", ["channel_swap", "shift", "flip", "nan"])
def test_gate_bounds_every_frame_and_refuses_non_finite(fault: str) -> None:
    """One broken frame among eight passed a gate that bounded the mean PSNR (12.7-18 dB for the
    broken frame); NaN output scored 100 dB. Each is now refused, naming the frame."""
    from qt_export.gate import GateBounds, evaluate

    rng = np.random.default_rng(0)
    reference = rng.random((8, 3, 48, 64), dtype=np.float32)
    reference = (reference + np.roll(reference, 1, axis=-1)) / 2  # some spatial correlation
    artifact = reference + rng.normal(0, 1e-3, reference.shape).astype(np.float32)  # a good INT8 export
    assert evaluate(reference, artifact, GateBounds(), None).passed
    broken = artifact.copy()
    broken[3] = {"channel_swap": lambda f: f[::-1], "shift": lambda f: np.roll(f, 4, axis=-1),
                 "flip": lambda f: f[:, :, ::-1], "nan": lambda f: np.where(f > 0.5, np.nan, f)}[fault](broken[3])
    result = evaluate(reference, broken, GateBounds(), None)
    assert not result.passed
    assert any("frame 3" in r for r in result.reasons) or any("non-finite" in r for r in result.reasons)
    assert np.isfinite(result.psnr_vs_fp32) and result.psnr_min < 30


def test_int8_on_too_few_frames_is_refused_and_nothing_written(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    """One readable calibration frame was used to calibrate *and* to gate, and report.json called
    it held-out. The frames are split disjointly and a minimum of each is required."""
    import cv2

    from qt_export.export import MIN_CALIB_FRAMES, MIN_GATE_FRAMES, _split, synthetic_frames

    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / "only.png"), synthetic_frames(1, (120, 160), seed=1)[0])
    out = tmp_path / "int8"
    code = main([str(tiny_ckpt), "--target", "cpu", "--int8", "--calib", str(one), "--no-calib-iqa",
                 "--size", "128x96", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "only 1 readable frames" in err and not out.exists()
    frames = synthetic_frames(MIN_CALIB_FRAMES + MIN_GATE_FRAMES + 3, (24, 32), seed=2)
    calib, gate = _split(frames, 8)
    assert len(calib) >= MIN_CALIB_FRAMES and len(gate) >= MIN_GATE_FRAMES
    assert not {f.tobytes() for f in calib} & {f.tobytes() for f in gate}  # disjoint


def test_absurd_export_size_is_a_one_line_error(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    code = main([str(tiny_ckpt), "--target", "cpu", "--size", "100000x100000", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and "larger than 8192" in err and len(err.strip().splitlines()) == 1


def test_format_table_is_one_table_in_two_halves():
    """Every export format has its runtime half (files, backends) and resolvable hooks; adding a
    format is one exporter module plus one entry in each half, nothing else."""
    from qt_runtime.backends import BACKENDS
    from qt_runtime.formats import ARTIFACT_FORMATS

    assert set(FORMATS) == set(ARTIFACT_FORMATS)
    for name, spec in FORMATS.items():
        runtime = ARTIFACT_FORMATS[name]
        assert spec.runtime is runtime and runtime.backends and set(runtime.backends) <= set(BACKENDS)
        assert callable(spec.export_fn)
        for hook in ("ptq", "finish_qat", "inspect"):
            assert getattr(spec, hook) is None or callable(spec.hook(hook))
        assert spec.supports_int8 == (spec.ptq is not None)
    assert ARTIFACT_FORMATS["openvino"].files() == ["model.xml", "model.bin"]
    assert ARTIFACT_FORMATS["onnx_qdq"].files() == ["model.onnx"]


def test_run_export_has_no_format_name_branches():
    import ast
    import inspect

    import qt_export.export as ex

    tree = ast.parse(inspect.getsource(ex))
    names = set(FORMATS)
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names]
    assert literals == [], f"qt_export/export.py names formats {literals}: put the difference in the format table"
