"""What a run reports: a progress bar (it/s, ETA), TensorBoard scalars and image grids, a
metrics.jsonl file that benchmarks read, and held-out PSNR/SSIM evaluations. Main rank only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool, total: int, start: int, progress: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self.last_eval: dict[str, float] = {}
        self._bar = None
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None)
        except ImportError:  # tensorboard is in the train extra; the run goes on without it
            self._tb = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)

    def _record(self, record: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def step(self, it: int, stage: str, scalars: dict[str, float], every: int) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
        if it % every and it != 1:
            return
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, it)
        self._record({"iteration": it, "stage": stage, **scalars})
        if self._bar is not None:
            losses = {k.split("/", 1)[1]: f"{v:.4f}" for k, v in scalars.items() if k.startswith("loss/")}
            self._bar.set_postfix(stage=stage, **losses)

    @torch.no_grad()
    def evaluate(self, it: int, model: torch.nn.Module, heldout: Any, quality: int | None) -> dict[str, float]:
        from qt_train.evaluate import run_model
        from qt_train.metrics import psnr, ssim

        outs = run_model(model, heldout.lq, quality)
        result = {
            f"eval/{heldout.domain}_psnr": float(psnr(outs, heldout.gt).mean()),
            f"eval/{heldout.domain}_ssim": float(ssim(outs, heldout.gt).mean()),
            f"eval/{heldout.domain}_input_psnr": float(psnr(heldout.lq, heldout.gt).mean()),
        }
        if self._tb is not None:
            for k, v in result.items():
                self._tb.add_scalar(k, v, it)
        self._record({"iteration": it, **result})
        self.last_eval = result
        return result

    @torch.no_grad()
    def images(self, it: int, lq: torch.Tensor, gt: torch.Tensor, model: torch.nn.Module, quality: int | None) -> None:
        if self._tb is None:
            return
        from torchvision.utils import make_grid

        n = min(4, len(lq))
        out = model(lq[:n], quality=quality)
        grid = make_grid(torch.cat([lq[:n], out, gt[:n]]), nrow=n)
        self._tb.add_image("labelled/input_output_target", grid, it)

    def note(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._jsonl.close()
