"""Backbones: registry, the quality contract, any-size inputs, checkpoints, ONNX export."""

from __future__ import annotations

import pytest
import torch

from qt_train.models import (
    BACKBONES,
    CheckpointMismatchError,
    EdgeUNet,
    EdgeUNetConfig,
    FoldedQuality,
    NAFNetConfig,
    QualityInput,
    backbone_config_class,
    build_backbone,
    load_state_dict_checked,
)

# Small configs keep the tests fast on 2 CPU cores; the defaults are exercised once below.
SMALL = {
    "edge_unet": {"widths": (8, 12, 16), "enc_blocks": (1, 1), "mid_blocks": 1, "dec_blocks": (1, 1)},
    "nafnet": {"width": 8, "enc_blocks": (1, 1, 1), "mid_blocks": 1, "dec_blocks": (1, 1, 1)},
    "edge_guided": {"widths": (8, 12, 16), "enc_blocks": (1, 1), "mid_blocks": 1, "dec_blocks": (1, 1),
                    "head": "gain", "scale": 2, "detail_width": 8, "detail_blocks": 1},
}
ARCHS = sorted(SMALL)


def small(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(name, **SMALL[name]).eval()


def perturb_embedding(model: torch.nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = model.quality_embed.embed.weight
        w.copy_(torch.randn(w.shape, generator=g))


def open_heads(model: torch.nn.Module, seed: int = 2) -> None:
    """edge_guided starts at the identity (zero-initialised heads); give its heads random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (model.maps[1], model.detail[2] if model.detail is not None else None):
            if conv is not None:
                conv.weight.copy_(0.1 * torch.randn(conv.weight.shape, generator=g))


def test_registry_lists_all_and_rejects_unknown() -> None:
    assert set(BACKBONES) == {"edge_unet", "edge_guided", "nafnet"}
    assert backbone_config_class("nafnet") is NAFNetConfig
    with pytest.raises(ValueError, match="edge_guided, edge_unet, nafnet"):
        build_backbone("unet3000")
    with pytest.raises(ValueError, match="widths"):
        build_backbone("edge_unet", widht=(8, 8, 8))
    with pytest.raises(TypeError):
        build_backbone("edge_unet", config=NAFNetConfig())
    model = build_backbone("edge_unet", config=EdgeUNetConfig(widths=(8, 8, 8)))
    assert isinstance(model, EdgeUNet) and model.config.widths == (8, 8, 8)


def test_configs_are_frozen_and_validated() -> None:
    cfg = EdgeUNetConfig()
    with pytest.raises(AttributeError):
        cfg.widths = (1, 2, 3)  # type: ignore[misc]
    with pytest.raises(ValueError):
        EdgeUNetConfig(widths=(8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NAFNetConfig(enc_blocks=(1, 1), dec_blocks=(1,))


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("hw", [(37, 53), (16, 16), (5, 7)])
def test_any_size_in_same_size_out(name: str, hw: tuple[int, int]) -> None:
    model = small(name)
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("name", ARCHS)
def test_quality_forms_and_zero_init(name: str) -> None:
    model = small(name)
    x = torch.rand(2, 3, 24, 20)
    with torch.no_grad():
        base = model(x)
        for q in (7, 6.5, torch.tensor([3, 7]), torch.tensor([0.5, 6.0]), torch.tensor(4)):
            # zero-initialised embedding: conditioned == unconditioned at init
            assert torch.equal(model(x, quality=q), base)
    with pytest.raises(ValueError):
        model(x, quality=8)
    with pytest.raises(ValueError):
        model(x, quality=-0.5)
    with pytest.raises(TypeError):
        model(x, quality="7")
    with pytest.raises(ValueError):
        model(x, quality=7, bias=model.level_bias(7))
    with pytest.raises(ValueError):
        model(x, quality=torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("name", ARCHS)
def test_level_bias_interpolation_and_precomputed_bias(name: str) -> None:
    model = small(name)
    perturb_embedding(model)
    c = model.bottleneck_channels
    b6, b7 = model.level_bias(6), model.level_bias(7)
    assert b7.shape == (1, c, 1, 1)
    torch.testing.assert_close(model.level_bias(6.5), (b6 + b7) / 2)
    torch.testing.assert_close(model.level_bias(6.0), b6)
    torch.testing.assert_close(
        model.level_bias(torch.tensor([6.5, 2.0])), torch.cat([(b6 + b7) / 2, model.level_bias(2)])
    )
    assert torch.equal(model.level_bias(torch.tensor([7])), b7)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x, quality=7), model(x, bias=b7))
        torch.testing.assert_close(model(x, quality=6.5), model(x, bias=(b6 + b7) / 2))
        per_sample = model(x, quality=torch.tensor([6, 7]))
        torch.testing.assert_close(per_sample[:1], model(x[:1], quality=6))
        torch.testing.assert_close(per_sample[1:], model(x[1:], quality=7))


@pytest.mark.parametrize("name", ARCHS)
def test_levels_differ_after_perturbing_embedding(name: str) -> None:
    model = small(name)
    if name == "nafnet":  # NAFBlocks start as identities; open their residual branches
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 4 and p.shape[0] == 1 and p.shape[2:] == (1, 1):
                    p.fill_(0.5)
    if name == "edge_guided":
        open_heads(model)
    perturb_embedding(model)
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25
    with torch.no_grad():
        outs = [model(x, quality=q) for q in (None, 3, 7)]
    assert not torch.allclose(outs[0], outs[1])
    assert not torch.allclose(outs[1], outs[2])


@pytest.mark.parametrize("name", ARCHS)
def test_state_dict_round_trip(name: str) -> None:
    src = small(name, seed=0)
    perturb_embedding(src)
    dst = small(name, seed=1)
    load_state_dict_checked(dst, src.state_dict(), name)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(src(x, quality=5.5), dst(x, quality=5.5))


def test_wrong_arch_checkpoint_is_refused_clearly() -> None:
    unet, naf = small("edge_unet"), small("nafnet")
    with pytest.raises(CheckpointMismatchError, match="'nafnet'.*'edge_unet'.*first mismatch: key '"):
        load_state_dict_checked(unet, naf.state_dict(), "nafnet")
    # A checkpoint that claims the right arch but does not fit names the first key.
    with pytest.raises(CheckpointMismatchError, match="edge_unet.*key 'stem.1.weight'"):
        load_state_dict_checked(unet, naf.state_dict(), "edge_unet")
    other = build_backbone("edge_unet", **{**SMALL["edge_unet"], "widths": (8, 12, 24)})
    with pytest.raises(CheckpointMismatchError, match=r"key 'down3.0.weight' has shape \(24, 12, 3, 3\)"):
        load_state_dict_checked(unet, other.state_dict(), "edge_unet")


def test_default_edge_unet_budget() -> None:
    """The default edge model stays inside its INT8 real-time budget (about 1.7 GMAC at 640x360)."""
    from qt_train.models.profile import count_macs, count_params

    model = build_backbone("edge_unet").eval()
    macs = count_macs(model, 360, 640)
    assert 1.0e9 < macs < 3.0e9
    assert count_params(model) < 1_000_000


def _onnx_ops(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


STANDARD_OPS = {
    "Conv", "Relu", "Add", "Concat", "DepthToSpace", "SpaceToDepth", "Reshape", "Transpose", "Clip",
    "Pad", "Slice", "Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast",
    "Sub", "Mod", "Mul", "Floor",
}  # fmt: skip


# The guided filter and the physical heads: pooling, resize and element-wise maths, all standard ONNX.
GUIDED_OPS = {"AveragePool", "Resize", "Div", "Exp", "Sigmoid", "Tanh", "Min", "Max", "ReduceMean", "Concat"}

LEGACY_EXPORT = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:torch.*", "ignore::DeprecationWarning:tests.*"
)


@LEGACY_EXPORT
@pytest.mark.parametrize("name", ["edge_unet", "edge_guided"])
def test_edge_onnx_export_matches_onnxruntime(tmp_path, name: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = small(name)
    if name == "edge_guided":
        open_heads(model)
    perturb_embedding(model)
    folded = FoldedQuality(model, 7).eval()
    path = tmp_path / f"{name}.onnx"
    dyn = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(
        folded, (torch.rand(1, 3, 32, 48),), str(path), opset_version=17, dynamo=False,
        input_names=["input"], output_names=["output"], dynamic_axes={"input": dyn, "output": dyn},
    )  # fmt: skip
    ops = _onnx_ops(path)
    allowed = STANDARD_OPS | (GUIDED_OPS if name == "edge_guided" else set())
    assert ops <= allowed, ops - allowed
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 32, 48), (2, 3, 37, 53), (1, 3, 64, 96)]:  # dynamic sizes, including padding
        x = torch.rand(*shape)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            want = model(x, quality=7).numpy()
        assert abs(got - want).max() < 1e-5


@LEGACY_EXPORT
def test_edge_unet_quality_input_export(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = small("edge_unet")
    perturb_embedding(model)
    path = tmp_path / "edge_unet_q.onnx"
    torch.onnx.export(
        QualityInput(model).eval(), (torch.rand(1, 3, 32, 32), torch.tensor([7.0])), str(path),
        opset_version=17, dynamo=False, input_names=["input", "quality"], output_names=["output"],
        dynamic_axes={"input": {0: "n"}, "quality": {0: "n"}, "output": {0: "n"}},
    )  # fmt: skip
    assert _onnx_ops(path) <= STANDARD_OPS
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 32, 32)
    q = torch.tensor([6.5, 3.0])
    (got,) = session.run(None, {"input": x.numpy(), "quality": q.numpy()})
    with torch.no_grad():
        want = model(x, quality=q).numpy()
    assert abs(got - want).max() < 1e-5


@pytest.mark.slow
def test_default_nafnet_forward() -> None:
    model = build_backbone("nafnet").eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 40, 72), quality=7)
    assert y.shape == (1, 3, 40, 72)


# ----------------------------------------------------------------------------- edge_guided
@pytest.mark.parametrize("head", ["haze", "water", "gain", "affine"])
def test_edge_guided_starts_near_identity_and_keeps_texture(head: str) -> None:
    """A fresh model returns its input (gain, affine) or a mild, smooth inversion (haze, water);
    with heads opened, fine texture of the input survives: the maps are smooth, the detail is the
    input's."""
    torch.manual_seed(0)
    model = build_backbone("edge_guided", head=head, widths=(8, 12, 16)).eval()
    x = torch.rand(1, 3, 64, 64) * 0.6 + 0.2
    with torch.no_grad():
        assert (model(x) - x).abs().max() < (0.15 if head in ("haze", "water") else 1e-6)
        open_heads(model)
        y = model(x)
    hp = x - torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    hp_y = y - torch.nn.functional.avg_pool2d(y, 5, 1, 2, count_include_pad=False)
    corr = torch.nn.functional.cosine_similarity(hp.flatten(), hp_y.flatten(), dim=0)
    assert float(corr) > 0.9


def test_edge_guided_haze_head_inverts_the_scattering_model() -> None:
    """The haze head's coefficients are the exact inverse of I = J t + A (1 - t)."""
    from qt_train.models.edge_guided import HEADS

    j = torch.rand(1, 3, 8, 8)
    z = torch.randn(1, 1, 8, 8)
    g = torch.randn(1, 3, 1, 1)
    t = 0.1 + 0.9 * torch.sigmoid(z + 2.0)
    airlight = torch.sigmoid(g + 1.0)
    hazy = j * t + airlight * (1 - t)
    a, b = HEADS["haze"].coefficients(z, g, 0.1)
    torch.testing.assert_close(a * hazy + b, j, rtol=1e-4, atol=1e-5)


def test_edge_guided_config_validation() -> None:
    from qt_train.models import EdgeGuidedConfig

    for bad in ({"head": "fog"}, {"scale": 3}, {"t_min": 0.0}, {"gf_eps": 0.0}, {"detail_width": -1}):
        with pytest.raises(ValueError):
            EdgeGuidedConfig(**bad)
    assert build_backbone("edge_guided", scale=4).pad_multiple == 32


def test_upsample2x_is_bilinear() -> None:
    from qt_train.models.edge_guided import Upsample2x

    x = torch.rand(2, 5, 7, 9)
    want = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(Upsample2x(5)(x), want, rtol=0, atol=1e-6)
    assert "weight" not in Upsample2x(5).state_dict()  # a fixed kernel, not carried by checkpoints


def _edge_guided_on_images(model, x: torch.Tensor) -> torch.Tensor:
    """The model's arithmetic written plainly on (N, 3, H, W) images (average pooling, bilinear
    upsampling, the guided filter at full resolution): the reference for its phase-layout forward."""
    from qt_train.models.common import pad_to_multiple
    from qt_train.models.edge_guided import box
    from qt_train.models.edge_unet import run_trunk

    cfg = model.config
    h, w = x.shape[-2:]
    xp = pad_to_multiple(x, model.pad_multiple)
    x_lo = torch.nn.functional.avg_pool2d(xp, cfg.scale)
    feat, bottleneck = run_trunk(model, x_lo, model.condition(7, None, x.shape[0]))
    maps, guide_lo, guide_hi = model.maps(feat), model.guide(x_lo), model.guide(xp)
    mean_g = box(guide_lo, cfg.gf_radius)
    mean_m = box(maps, cfg.gf_radius)
    cov = box((guide_lo - mean_g) * (maps - mean_m), cfg.gf_radius)
    coef_a = cov / (box((guide_lo - mean_g) ** 2, cfg.gf_radius) + cfg.gf_eps)
    coef_b = mean_m - coef_a * mean_g
    def up(c: torch.Tensor) -> torch.Tensor:  # bilinear x2, log2(scale) times
        c = box(c, cfg.gf_radius)
        for _ in range(cfg.scale.bit_length() - 1):
            c = torch.nn.functional.interpolate(c, scale_factor=2, mode="bilinear")
        return c

    maps_hi = up(coef_a) * guide_hi + up(coef_b)
    glob = model.colour(bottleneck.mean(dim=(2, 3), keepdim=True)) if model.colour is not None else None
    a, b = model._coefficients(maps_hi, glob, cfg.t_min)
    y = a * xp + b
    if model.detail is not None:
        context = model.detail_context(feat)
        for _ in range(cfg.scale.bit_length() - 1):
            context = torch.nn.functional.interpolate(context, scale_factor=2, mode="bilinear")
        y = y + torch.nn.functional.pixel_shuffle(model.detail(model.detail_in(y) + context), 2)
    return y[:, :, :h, :w].clamp(0.0, 1.0)


@pytest.mark.parametrize("head,scale", [("haze", 2), ("water", 2), ("gain", 4), ("affine", 2)])
def test_edge_guided_phase_layout_equals_image_arithmetic(head: str, scale: int) -> None:
    """The forward holds full resolution as 2x2 phases (for OpenVINO's channel-blocked kernels);
    it must compute exactly what the maths on images does."""
    torch.manual_seed(0)
    detail = {"detail_width": 8, "detail_blocks": 1} if head in ("gain", "affine") else {}
    model = build_backbone("edge_guided", head=head, scale=scale, widths=(8, 12, 16), **detail).eval()
    open_heads(model)
    perturb_embedding(model)
    x = torch.rand(2, 3, 45, 70)
    with torch.no_grad():
        torch.testing.assert_close(model(x, quality=7), _edge_guided_on_images(model, x), rtol=0, atol=1e-5)
