"""Mean-Teacher EMA: the teacher's weights follow the student's (docs/method.md §2)."""

from __future__ import annotations

import torch
from torch import nn


def ema_decay(step: int, max_decay: float = 0.999) -> float:
    """Semi-UIR's warm-up rule ``min(1 - 1/(step+1), max_decay)``.

    Why a warm-up: early in training the teacher should track the student closely (step 0 gives
    0, a plain copy) instead of averaging in its stale initial weights.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= max_decay <= 1.0:
        raise ValueError(f"max_decay must lie in [0, 1], got {max_decay}")
    return min(1.0 - 1.0 / (step + 1), max_decay)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """In place: teacher_param = decay * teacher_param + (1 - decay) * student_param; buffers copied.

    Parameters are matched by name and shape, and a mismatch raises instead of silently averaging
    the wrong tensors. ``decay`` 0 copies the student exactly, 1 keeps the teacher exactly.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {decay}")
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(s_params) ^ set(t_params))
        raise ValueError(f"teacher and student parameters differ, e.g. '{missing[0]}'")
    for name, t in t_params.items():
        s = s_params[name]
        if t.shape != s.shape:
            raise ValueError(
                f"parameter '{name}' is {tuple(t.shape)} in the teacher, {tuple(s.shape)} in the student"
            )
        # lerp is exact at both ends: weight 0 keeps t, weight 1 returns s.
        t.lerp_(s.detach().to(t.dtype), 1.0 - decay)
    t_bufs = dict(teacher.named_buffers())
    for name, s in student.named_buffers():
        if name not in t_bufs:
            raise ValueError(f"buffer '{name}' is in the student but not the teacher")
        t_bufs[name].copy_(s)
