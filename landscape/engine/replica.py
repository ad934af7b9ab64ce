"""A private model of the loop strategy: each of its workers owns one."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from landscape.engine.bn import bn_modules
from landscape.engine.cuda_graph import GraphedStep
from landscape.engine.fold import Folded
from landscape.engine.layout import ParamLayout


@dataclass
class Replica:
    """A model with its parameters and buffers by name, its BN-folded view and its BN layers.
    On a GPU a replica also owns its stream, the device accumulators of its BN statistics pass
    and that pass's CUDA graph."""

    model: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    folded: Folded | None
    bn_layers: list[tuple[str, nn.Module]]
    stream: Any = None  # torch.cuda.Stream of this replica's worker (GPU, several workers)
    acc: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    graph: GraphedStep | bool | None = None  # None: not captured yet; False: none
    graph_calls: dict[str, int] = field(default_factory=dict)  # BN calls of one replay
    graph_rows: int = 0  # the rows of the graph's input (ghost batches x BN batch size)

    @classmethod
    def of(cls, model: nn.Module, folded: Folded | None) -> Replica:
        return cls(model, dict(model.named_parameters()), dict(model.named_buffers()), folded,
                   bn_modules(model))

    @classmethod
    def copy_of(cls, first: Replica) -> Replica:
        """Another replica like ``first``: its own copy of the model (and of the folded view)."""
        model = copy.deepcopy(first.model)
        return cls.of(model, None if first.folded is None else Folded(model, first.folded.pairs))

    def load(self, layout: ParamLayout, w: torch.Tensor, buffers: dict[str, torch.Tensor] | None,
             device: torch.device) -> None:
        """Load the weight vector ``w`` (and BN ``buffers``) into the replica's model on ``device``."""
        w = w.to(device, torch.float32)  # one copy to the device, then copies on it
        for name, t in layout.unflatten(w).items():
            self.params[name].copy_(t)
        for name, t in (buffers or {}).items():
            self.buffers[name].copy_(t)

    def evaluation_model(self) -> nn.Module:
        """The model to evaluate with: the BN-folded view, refreshed, where there is one."""
        return self.model if self.folded is None else self.folded.refresh()
