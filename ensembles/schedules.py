"""Learning-rate schedules of the paper's released code."""

from __future__ import annotations

import math


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Per-epoch cosine: epoch k (1-based) of E uses ``lr * 0.5 * (1 + cos(pi * (k-1) / E))``."""
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch must be in 1..{epochs}, got {epoch}")
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
