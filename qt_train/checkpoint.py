"""Checkpoints: everything a run needs to continue exactly, written atomically, read safely.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
`torch.load(weights_only=True)` (no arbitrary unpickling). It is written to a temporary file in
the same folder and renamed over the target, so a crash or SIGKILL mid-write leaves the previous
checkpoint intact. It carries a SHA-256 of its content (every tensor's bytes and every value, in
key order), checked on load: flipped bytes inside a tensor load without any error from torch.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

FORMAT = "qualiteacher-edge-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says which file and what to do."""


def content_digest(obj: Any) -> str:
    """SHA-256 of a checkpoint's content: keys in sorted order, tensors by dtype, shape and bytes."""
    import hashlib

    import torch

    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(b"D%d" % len(o))
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(b"L%d" % len(o))
            for v in o:
                feed(v)
        else:
            h.update(repr(o).encode())

    feed(obj)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any], keep: int = 0) -> Path:
    """Atomically write `state` (plus format tags and its content hash) to `path`.

    ``keep`` > 0 also keeps the last ``keep`` versions in ``<path stem>-history/`` (hard links to
    the files ``path`` pointed to, so keeping them costs no copy).
    """
    import torch

    from qt_core.atomic import atomic_write_bytes

    tagged = {"format": FORMAT, "version": VERSION, **state}
    tagged["content_sha256"] = content_digest(tagged)
    buf = io.BytesIO()
    torch.save(tagged, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    if keep > 0:
        _keep_history(path, int(state.get("iteration", 0)), keep)
    return path


def history_dir(path: Path) -> Path:
    return path.with_name(f"{path.stem}-history")


def _keep_history(path: Path, iteration: int, keep: int) -> None:
    hist = history_dir(path)
    hist.mkdir(exist_ok=True)
    link = hist / f"iter-{iteration:08d}{path.suffix}"
    link.unlink(missing_ok=True)
    os.link(path, link)
    for old in sorted(hist.glob(f"iter-*{path.suffix}"))[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, expect_arch: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; refuse truncated files and other architectures.

    A bare state dict (e.g. a pretrained model from elsewhere) is accepted and returned as
    {"model": state_dict}, so `--init` can take any compatible weights.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found — pass the path of a .ckpt written by qt-train")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes) — use an earlier checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({reason[:120]}) — use an earlier checkpoint"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of weights")
    if state.get("format") != FORMAT:
        if all(isinstance(v, torch.Tensor) for v in state.values()):
            return {"model": state}
        inner = state.get("params") or state.get("state_dict") or state.get("model")
        if isinstance(inner, dict):
            return {"model": inner}
        raise CheckpointError(f"checkpoint {path} is not a qualiteacher-edge checkpoint nor a state dict")
    if "content_sha256" in state:
        stored = state.pop("content_sha256")
        if content_digest(state) != stored:
            earlier = history_dir(path)
            hint = f" (earlier ones: {earlier}/)" if earlier.is_dir() else ""
            raise CheckpointError(f"checkpoint {path} is corrupt: its content does not match the hash written with "
                                  f"it — use an earlier checkpoint{hint}")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['version']}, newer than this toolkit's {VERSION} — upgrade"
        )
    if expect_arch is not None and state.get("arch") not in (None, expect_arch):
        raise CheckpointError(
            f"checkpoint {path} is for architecture '{state.get('arch')}', but the config says '{expect_arch}'"
            f" — set model.arch: {state.get('arch')} or pick a matching checkpoint"
        )
    return state


def model_from_state(state: dict[str, Any], source: str, arch: str | None = None,
                     arch_config: dict[str, Any] | None = None) -> Any:
    """The backbone a checkpoint describes, with its EMA weights (else its model weights), in eval mode.

    `arch`/`arch_config` fill in for checkpoints that do not carry them (e.g. from a run config).
    """
    from qt_core.config import build
    from qt_train.models import backbone_config_class, build_backbone, load_state_dict_checked

    arch = state.get("arch", arch)
    if arch is None:
        raise CheckpointError(f"checkpoint {source} does not name its architecture — pass a qt-train checkpoint")
    options = state.get("arch_config", arch_config or {})
    model = build_backbone(arch, build(backbone_config_class(arch), options, source=source))
    load_state_dict_checked(model, state.get("ema") or state["model"], arch)
    return model.eval()
