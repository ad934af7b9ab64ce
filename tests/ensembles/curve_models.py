"""A model whose loss is known in closed form, for fitting curves (#20): its two weights are its
output, and the loss of the output (x, y) is the ring potential ``(x^2 + (y - C)^2 - R2)^2``:
zero on the circle through A = (-1, 0) and B = (1, 0) centred at (0, C), so the lowest path from
A to B (the shorter arc) never rises above 0, while the straight line, a chord, peaks at
``(C^2 - R2)^2 = 1`` at the origin. The centre is off the line so that the line is not a
stationary curve (a symmetric ring would leave bends on it)."""

from __future__ import annotations

import torch
from torch import nn

C, R2 = -0.5, 1.25  # R2 = 1 + C^2: the circle passes through A and B
LINE_PEAK, LOWEST_PEAK = (C**2 - R2) ** 2, 0.0


class Point(nn.Module):
    """Outputs its weight vector for every input."""

    def __init__(self, x: float = 0.0, y: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([float(x), float(y)]))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(inputs), 2)


def ring(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The per-sample ring potential of the output (the targets are not used)."""
    x, y = outputs[:, 0], outputs[:, 1]
    return (x**2 + (y - C) ** 2 - R2) ** 2
