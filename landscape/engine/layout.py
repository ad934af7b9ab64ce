"""The weight vector of a model: every floating-point parameter (BatchNorm affine included), in
``named_parameters`` order, as one float64 vector (docs/architecture.md, "Contracts")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ParamLayout:
    """Names and shapes of the floating-point parameters that make up the weight vector."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, model: nn.Module) -> "ParamLayout":
        items = [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.is_floating_point()]
        return cls(tuple(n for n, _ in items), tuple(s for _, s in items))

    @property
    def numel(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """(P,) float64 vector from a name -> tensor mapping (a state dict or params dict)."""
        return torch.cat([tensors[n].detach().reshape(-1).to(torch.float64) for n in self.names])

    def unflatten(self, vec: torch.Tensor, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Name -> tensor mapping from a (P,) vector (or (K, P) -> (K, *shape) tensors)."""
        out, start = {}, 0
        lead = vec.shape[:-1]
        for name, shape in zip(self.names, self.shapes):
            n = int(np.prod(shape))
            out[name] = vec[..., start : start + n].reshape(*lead, *shape).to(dtype)
            start += n
        return out
