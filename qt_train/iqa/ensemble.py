"""Score images with the IQA ensemble: per-image scores and levels, a reward, block maps.

Input policy (decided once, here):
  * (N, 3, H, W) float in [0, 1]. Grayscale (N, 1, H, W) is replicated to 3 channels (the
    members rate luminance, which a grey RGB image keeps).
  * NaN/inf -> ValueError. Values outside [0, 1] by more than ``range_tolerance`` ->
    ValueError (a [-1, 1] or 0..255 tensor is a caller bug that clamping would hide); values
    within the tolerance are clamped.
  * An image side smaller than a member's ``min_size`` -> ValueError naming the member.
  * A member that cannot rate an image (NIQE on a flat frame: no texture, singular
    covariance) gives raw NaN for that image, which ``normalise`` maps to 0 (worst quality);
    the combined score is never NaN.

Block maps: every block (edge blocks may be partial) is scored through a crop of
max(block, member.min_size) px (capped by the image side) centred on the block and shifted
inside the image, so all blocks of all images go through each member in one batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .cache import ScoreCache, image_key
from .mapping import block_grid, block_quality_map, combine, normalise, to_level, window_starts
from .spec import EnsembleSpec, Member, default_spec
from .weights import check_weights_file, no_network, resolve_weights

#: Gradient share a differentiable member passes in ``reward`` where its raw score lies outside
#: ``raw_range`` (the value stays clamped). Small, so in-range members dominate the direction.
REWARD_LEAK = 0.1


@dataclass(frozen=True)
class EnsembleScores:
    """Scores of a batch: raw and normalised per member (N,), combined (N,), level (N,) long."""

    raw: Mapping[str, torch.Tensor]
    norm: Mapping[str, torch.Tensor]
    combined: torch.Tensor
    level: torch.Tensor


class BrisqueLiveMetric(torch.nn.Module):
    """BRISQUE with the LIVE-trained SVR (``brisque_live.py``) as an ensemble member: raw scores
    (N,) of (N, 3, H, W) images. numpy features and an SVR, so never differentiable."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        super().__init__()
        from .brisque_live import ASSET, BrisqueLive

        self.impl = BrisqueLive(ASSET if path is None else path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.impl(x).to(x.device)


def _brisque_live(member: Member, path) -> torch.nn.Module:
    if member.differentiable:
        raise ValueError("IQA member 'brisque_live' is not differentiable (numpy features, an SVR); "
                         "set differentiable: false")
    return BrisqueLiveMetric(path)


def _niqe_original(member: Member, path) -> torch.nn.Module:
    """pyiqa's NIQE with the published pristine model (``calibration/niqe_original.py``), built
    by the same path as any pyiqa member."""
    from .judges import ASSETS

    niqe = dataclasses.replace(member, name="niqe", weights_path=str(path or ASSETS / "niqe_original.mat"))
    return build_metric(niqe, "cpu")


#: Members the project implements or configures itself (name -> builder(member, resolved weights
#: path or None)); every other name is a pyiqa metric.
PROJECT_METRICS = {"brisque_live": _brisque_live, "niqe_original": _niqe_original}


def build_metric(
    member: Member, device: torch.device | str, weights_dir: str | os.PathLike | None = None
) -> torch.nn.Module:
    """Create the metric of one member, offline: a ``PROJECT_METRICS`` entry, else pyiqa's.

    The weights file is resolved first (clear FileNotFoundError if missing) and handed to the
    metric through ``member.weights_arg``; construction runs with the network refused.
    Differentiable members are built as losses (``as_loss=True``, no reduction) so pyiqa
    keeps autograd on; the others run without grad.
    """
    if member.name in PROJECT_METRICS:
        metric = PROJECT_METRICS[member.name](member, resolve_weights(member, weights_dir)).to(device).eval()
        for p in metric.parameters():
            p.requires_grad_(False)
        return metric
    import pyiqa

    if member.name not in pyiqa.list_models():
        raise ValueError(f"IQA member {member.name!r} is neither a project metric "
                         f"({', '.join(PROJECT_METRICS)}) nor a pyiqa metric")
    kwargs = dict(member.options)
    path = resolve_weights(member, weights_dir)
    if path is not None:
        check_weights_file(path)  # pyiqa unpickles with weights_only=False
        kwargs[member.weights_arg] = str(path)
    if member.differentiable:
        kwargs.setdefault("loss_reduction", "none")
    try:
        # pyiqa prints "Loading pretrained model ..." to stdout, which would corrupt `qt-iqa --json`.
        with no_network(f"IQA member {member.name!r}"), contextlib.redirect_stdout(io.StringIO()):
            metric = pyiqa.create_metric(member.name, as_loss=member.differentiable, device=device, **kwargs)
    except (ConnectionError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise RuntimeError(
            f"IQA member {member.name!r} tried to download weights while being built; give it a "
            f"weights_path (and the file) instead. Cause: {exc}"
        ) from exc
    metric.eval()
    for p in metric.parameters():
        p.requires_grad_(False)
    return metric


def _run_member(metric: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Raw scores (N,) float32 of one member on a batch.

    NIQE fails for a whole batch when one image has no usable texture (singular covariance);
    then the batch is retried image by image and the failing images get NaN.
    """
    n = x.shape[0]
    try:
        with warnings.catch_warnings():
            # NIQE on a single 96 px block: covariance of one sample (zero); expected, not news.
            warnings.filterwarnings("ignore", message=".*degrees of freedom.*")
            out = metric(x)
    except torch.linalg.LinAlgError:
        if n == 1:
            return torch.full((1,), float("nan"), device=x.device)
        return torch.cat([_run_member(metric, x[i : i + 1]) for i in range(n)])
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.reshape(n).float()


class Ensemble(torch.nn.Module):
    """The NR-IQA ensemble of a spec (default: the offline NIQE + PIQE + CNNIQA preset)."""

    def __init__(
        self,
        spec: EnsembleSpec | None = None,
        *,
        device: torch.device | str | None = None,
        weights_dir: str | os.PathLike | None = None,
        cache_size: int = 4096,
        range_tolerance: float = 1e-3,
        max_batch: int = 256,
    ) -> None:
        super().__init__()
        self.spec = default_spec() if spec is None else spec
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.range_tolerance = range_tolerance
        self.max_batch = max_batch
        self.cache = ScoreCache(cache_size)
        self.metrics = torch.nn.ModuleDict(
            {m.name: build_metric(m, self.device, weights_dir) for m in self.spec.members}
        )
        super().train(False)

    def train(self, mode: bool = True) -> Ensemble:
        """IQA members always stay in eval mode (no dropout / batch-norm updates while scoring)."""
        return super().train(False)

    # ------------------------------------------------------------------ input checks

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate a batch and return it as float (N, 3, H, W) in [0, 1] on the ensemble's device."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a float tensor in [0, 1], got dtype {x.dtype}")
        c, h, w = x.shape[1:]
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        elif c != 3:
            raise ValueError(f"expected 1 or 3 channels, got {c}")
        if x.shape[0] == 0:
            raise ValueError("empty batch")
        xd = x.detach()
        finite = torch.isfinite(xd)
        if not bool(finite.all()):
            raise ValueError(f"input contains {int((~finite).sum())} NaN/inf values")
        lo, hi = float(xd.min()), float(xd.max())
        tol = self.range_tolerance
        if lo < -tol or hi > 1.0 + tol:
            raise ValueError(f"input must lie in [0, 1] (tolerance {tol}); got min {lo:.4g}, max {hi:.4g}")
        for m in self.spec.members:
            if min(h, w) < m.min_size:
                raise ValueError(
                    f"image {h}x{w} is smaller than IQA member {m.name!r} accepts: "
                    f"both sides must be >= {m.min_size} px"
                )
        if lo < 0.0 or hi > 1.0:
            x = x.clamp(0.0, 1.0)
        return x.to(self.device)

    # ------------------------------------------------------------------ scoring

    def _raw_batched(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Raw scores of one member, in chunks of ``max_batch``, without grad."""
        with torch.no_grad():
            parts = [
                _run_member(self.metrics[name], x[i : i + self.max_batch])
                for i in range(0, len(x), self.max_batch)
            ]
        return torch.cat(parts)

    def _finish(self, raw: dict[str, torch.Tensor]) -> EnsembleScores:
        norm = {m.name: normalise(raw[m.name], m) for m in self.spec.members}
        combined = combine(norm, self.spec)
        return EnsembleScores(raw=raw, norm=norm, combined=combined, level=to_level(combined, self.spec))

    def score(self, x: torch.Tensor, use_cache: bool = True) -> EnsembleScores:
        """Score a batch (no grad). Images already seen (same 8-bit content) come from the cache."""
        x = self.check_input(x)
        n = x.shape[0]
        names = self.spec.names
        keys = [image_key(img) for img in x] if use_cache else [None] * n
        found = [self.cache.get(k) if k is not None else None for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            sub = x[todo]
            fresh = {name: self._raw_batched(name, sub).cpu() for name in names}
            for j, i in enumerate(todo):
                entry = {name: float(fresh[name][j]) for name in names}
                found[i] = entry
                if keys[i] is not None:
                    self.cache.put(keys[i], entry)
        raw = {
            name: torch.tensor([f[name] for f in found], dtype=torch.float32, device=x.device)
            for name in names
        }
        return self._finish(raw)

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble score (N,) for the preference loss.

        Gradients flow through members marked ``differentiable``; the others contribute
        detached values. No cache (the graph is needed). The value equals ``score().combined``;
        outside a member's raw range the gradient is the unclamped one times ``REWARD_LEAK``
        (see ``normalise``), so an output rated beyond the range still gets a direction.
        """
        x = self.check_input(x)
        norm = {}
        for m in self.spec.members:
            if m.differentiable:
                raw = _run_member(self.metrics[m.name], x)
                norm[m.name] = normalise(raw, m, leak=REWARD_LEAK)
            else:
                norm[m.name] = normalise(self._raw_batched(m.name, x.detach()), m).detach()
        return combine(norm, self.spec)

    def block_scores(self, x: torch.Tensor, block: int | None = None) -> dict[str, torch.Tensor]:
        """Raw scores of every block per member, (N, hb, wb) each, without grad."""
        x = self.check_input(x)
        block = self.spec.block if block is None else block
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        n, c, h, w = x.shape
        hb, wb = block_grid(h, w, block)
        out = {}
        for m in self.spec.members:
            wh, ww = min(max(block, m.min_size), h), min(max(block, m.min_size), w)
            tops, lefts = window_starts(h, block, wh), window_starts(w, block, ww)
            crops = torch.stack([x[:, :, t : t + wh, s : s + ww] for t in tops for s in lefts], dim=1)
            raw = self._raw_batched(m.name, crops.reshape(n * hb * wb, c, wh, ww))
            out[m.name] = raw.reshape(n, hb, wb)
        return out

    def block_map(self, x: torch.Tensor, block: int | None = None, expand: bool = False) -> torch.Tensor:
        """Ensemble quality per block, (N, hb, wb) in [0, 1]; ``expand=True`` gives (N, 1, H, W)."""
        block = self.spec.block if block is None else block
        raw = self.block_scores(x, block)
        norm = {m.name: normalise(raw[m.name], m) for m in self.spec.members}
        size = tuple(x.shape[-2:]) if expand else None
        return block_quality_map(norm, self.spec, size=size, block=block)
