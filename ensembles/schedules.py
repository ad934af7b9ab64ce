"""Learning-rate schedules of the paper's released code."""

from __future__ import annotations

import math


def cosine_lr(base_lr: float, epoch: int, epochs: int, warmup: int = 0) -> float:
    """Per-epoch cosine: epoch k (1-based) of E uses ``lr * 0.5 * (1 + cos(pi * (k-1) / E))``.

    With ``warmup`` W > 0 (the Swin-T recipe), epochs 1..W ramp linearly to ``lr * k / W`` and
    the cosine then runs over the remaining E - W epochs.
    """
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch must be in 1..{epochs}, got {epoch}")
    if not 0 <= warmup < epochs:
        raise ValueError(f"warmup must be in 0..{epochs - 1}, got {warmup}")
    if epoch <= warmup:
        return base_lr * epoch / warmup
    k, e = epoch - warmup, epochs - warmup
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (k - 1) / e))
