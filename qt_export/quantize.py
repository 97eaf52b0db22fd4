"""INT8 with NNCF: post-training quantisation, quantisation-aware fine-tuning, strip to Q/DQ.

Decisions (the measurements behind them: docs/results.md, "Export and INT8"):

- Symmetric preset (``QuantizationPreset.PERFORMANCE``): TensorRT accepts only symmetric Q/DQ.
- Signed activations for the TensorRT format: NNCF picks *unsigned* (uint8) quantizers after a
  ReLU or for a [0, 1] input, which TensorRT rejects. NNCF 3.4 refuses
  ``signedness_to_force=True`` against its hardware config, so after quantisation every unsigned
  symmetric quantizer is switched to signed (same scale = same max; one bit less resolution on
  non-negative tensors, which is what TensorRT would do anyway). OpenVINO keeps uint8
  activations (its u8 x s8 kernels are the fast ones).
- Bias correction off by default: estimated on a few hundred frames, NNCF's (fast) bias
  correction was the largest single source of INT8 error; ``--bias-correction`` turns it back on.
- Layers kept in floating point are named by *role* (``first``/``last`` convolution, the
  ``residual`` add, the ``clamp``, the ``guided`` element-wise maths of edge_guided), resolved on
  the model's own NNCF graph, so the option works for any backbone and for both the torch and the
  OpenVINO graph.
- OpenVINO PTQ quantises the converted ``openvino.Model`` with NNCF's OpenVINO backend (its IR
  ran faster than converting the NNCF torch module); QAT must train the torch module, whose
  conversion also gives a FakeQuantize IR.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

KEEP_FP_ROLES = ("first", "last", "residual", "clamp", "guided")
CONV_TYPES = ("conv2d", "Convolution")
# The element-wise maths of edge_guided's guided filter and physical heads (OpenVINO and NNCF-torch
# type names): variances and 1/t amplify any INT8 step, and on a CPU these ops are memory-bound, so
# INT8 buys nothing there (measured: AvgPool in i8 was slower than in f32).
GUIDED_TYPES = ("AvgPool", "Interpolate", "Multiply", "Divide", "Subtract", "Sigmoid", "Exp", "Tanh", "ReduceMean",
                "GroupConvolution", "Power", "avg_pool2d", "interpolate", "mul", "div", "sub", "sigmoid", "exp",
                "tanh", "mean")
ADD_TYPES = ("add", "Add")
CLAMP_TYPES = ("clamp", "Clamp")


@dataclass(frozen=True)
class QuantOptions:
    """PTQ knobs. ``keep_fp``: roles left in floating point (see :data:`KEEP_FP_ROLES`)."""

    keep_fp: tuple[str, ...] = ()
    signed_activations: bool = False
    bias_correction: bool = False


@dataclass(frozen=True)
class QATOptions:
    """QAT knobs: distillation (L1 to FP32) + cropped consistency, on random crops of the frames.

    A small lr and a weak consistency term: the FP32 model is not itself crop-consistent, so a
    strong one pulls the INT8 model away from it (docs/results.md, "Export and INT8")."""

    steps: int = 200
    lr: float = 5e-6
    batch: int = 4
    crop: int = 128
    consistency_weight: float = 0.1
    seed: int = 0


def parse_keep_fp(text: str) -> tuple[str, ...]:
    """``"first,last"`` -> ("first", "last"); ``"none"`` or "" -> (); unknown roles -> ValueError."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    roles = tuple(r.strip() for r in text.split(",") if r.strip())
    bad = [r for r in roles if r not in KEEP_FP_ROLES]
    if bad:
        raise ValueError(f"--keep-fp: unknown role(s) {', '.join(bad)}; valid: {', '.join(KEEP_FP_ROLES)}, none")
    return roles


# ------------------------------------------------------------------ graph roles


def torch_nodes(module: Any, example: Any) -> list[tuple[str, str]]:
    """(node name, type) of the module's NNCF graph in topological order."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(module, example)
    return [(n.node_name, n.node_type) for n in graph.topological_sort()]


def openvino_nodes(model: Any) -> list[tuple[str, str]]:
    from nncf.openvino.graph.nncf_graph_builder import GraphConverter

    graph = GraphConverter.create_nncf_graph(model)
    return [(n.node_name, n.node_type) for n in graph.topological_sort()]


def role_nodes(nodes: Sequence[tuple[str, str]], roles: Sequence[str]) -> list[str]:
    """Node names for the requested roles; a role the graph does not have -> ValueError."""
    convs = [n for n, t in nodes if t in CONV_TYPES]
    adds = [n for n, t in nodes if t in ADD_TYPES]
    clamps = [n for n, t in nodes if t in CLAMP_TYPES]
    table = {
        "first": convs[:1],
        "last": convs[-1:],
        "residual": adds[-1:],
        "clamp": clamps[-1:],
        "guided": [n for n, t in nodes if t in GUIDED_TYPES],
    }
    names: list[str] = []
    for role in roles:
        found = table[role]
        if not found:
            raise ValueError(f"--keep-fp {role}: the model graph has no such layer")
        names.extend(found)
    return sorted(set(names))


def ignored_scope(nodes: Sequence[tuple[str, str]], keep_fp: Sequence[str]) -> Any:
    import nncf

    names = role_nodes(nodes, keep_fp)
    return nncf.IgnoredScope(names=names) if names else None


# ------------------------------------------------------------------ PTQ


def _advanced(opts: QuantOptions) -> Any:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    return AdvancedQuantizationParameters(disable_bias_correction=not opts.bias_correction)


def _dataset(frames: Sequence[Any]) -> Any:
    import nncf

    return nncf.Dataset(list(frames))


def ptq_torch(module: Any, frames: Sequence[Any], opts: QuantOptions) -> Any:
    """NNCF PTQ of a torch module on ``frames`` (a list of (1, 3, H, W) float tensors)."""
    import nncf

    scope = ignored_scope(torch_nodes(module, frames[0]), opts.keep_fp)
    quantized = nncf.quantize(
        module, _dataset(frames), preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(frames), ignored_scope=scope, advanced_parameters=_advanced(opts),
    )
    if opts.signed_activations:
        force_signed(quantized)
    return quantized.eval()


def ptq_openvino(model: Any, frames: Sequence[Any], opts: QuantOptions) -> Any:
    """NNCF PTQ of an ``openvino.Model`` (frames as numpy (1, 3, H, W) float32)."""
    import nncf

    scope = ignored_scope(openvino_nodes(model), opts.keep_fp)
    data = [f.numpy() if hasattr(f, "numpy") else f for f in frames]
    return nncf.quantize(
        model, _dataset(data), preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(data), ignored_scope=scope, advanced_parameters=_advanced(opts),
    )


def force_signed(quantized: Any) -> int:
    """Switch every unsigned symmetric NNCF quantizer to signed; returns how many changed."""
    from nncf.torch.quantization.layers import SymmetricQuantizer

    changed = 0
    for mod in quantized.modules():
        if isinstance(mod, SymmetricQuantizer) and not mod.signed:
            mod.signed = True
            changed += 1
    return changed


# ------------------------------------------------------------------ QAT


def _random_crops(frames: Any, batch: int, crop: int, gen: Any) -> Any:
    import torch

    n, _, h, w = frames.shape
    ch, cw = min(crop, h), min(crop, w)
    idx = torch.randint(0, n, (batch,), generator=gen)
    tops = torch.randint(0, h - ch + 1, (batch,), generator=gen)
    lefts = torch.randint(0, w - cw + 1, (batch,), generator=gen)
    return torch.stack([frames[i, :, t : t + ch, s : s + cw] for i, t, s in zip(idx, tops, lefts, strict=True)])


def qat(
    quantized: Any, reference: Callable[[Any], Any], frames: Any, opts: QATOptions,
    progress: Callable[[int, float], None] | None = None,
) -> Any:
    """Fine-tune an NNCF-quantised torch module in place: L1 to the FP32 ``reference`` output
    plus the cropped-consistency loss (aligned crops) at the folded level; weights and quantizer
    scales both train. ``frames``: (N, 3, H, W) float tensor."""
    import torch
    import torch.nn.functional as F

    from qt_train.method.losses import cropped_consistency

    gen = torch.Generator().manual_seed(opts.seed)
    params = [p for p in quantized.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    optim = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    quantized.train()
    for step in range(opts.steps):
        x = _random_crops(frames, opts.batch, opts.crop, gen)
        with torch.no_grad():
            target = reference(x)
        y = quantized(x)
        loss = F.l1_loss(y, target)
        if opts.consistency_weight > 0:
            loss = loss + opts.consistency_weight * cropped_consistency(quantized, x, gen)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if progress is not None:
            progress(step, float(loss.detach()))
    quantized.eval()
    for p in params:
        p.requires_grad_(False)
    return quantized


# ------------------------------------------------------------------ strip


def strip_qdq(quantized: Any, example: Any) -> Any:
    """NNCF module -> plain torch module with torch.ao FakeQuantize (exports as Q/DQ ONNX)."""
    import nncf

    return nncf.strip(quantized, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example).eval()
