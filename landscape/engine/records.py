"""What the BN layers record during a forward of the BN statistics pass.

A forward pre-hook on every BN layer (``stats_hook``) records the batch mean and unbiased
variance of the layer's input into this thread's ``Recorder`` while recording is on; the
strategies turn the recorded sums into running statistics (``landscape.engine.sums``). With
ghost batches a BN layer's forward is replaced by ``ghost_bn``, which records for each of the
fixed batches it normalises at once.
"""

from __future__ import annotations

import collections
import threading

import torch
from torch import nn

from landscape.engine.sums import batch_moments, ghost_moments


class Recorder(threading.local):
    """What the BN layers' hooks record during one forward: per thread, since the loop
    strategy's workers run forwards at the same time. ``on`` switches recording on."""

    def __init__(self) -> None:
        self.on = False
        self.ghosts = False  # the BN layers record themselves (ghost_bn), not the hooks
        self.events: collections.deque = collections.deque()  # the tuner's pace (Clock.check)
        self.records: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.calls: dict[str, int] = {}

    def clear(self) -> None:
        """Forget the records of the last forward (this thread's)."""
        self.records.clear()
        self.calls.clear()

    def add(self, name: str, mean: torch.Tensor, var: torch.Tensor, calls: int) -> None:
        """Record a BN layer's batch means and unbiased variances (summed over ``calls``
        batches); a layer that runs again in the same forward adds to its record."""
        if name in self.records:
            prev_mean, prev_var = self.records[name]
            mean, var = prev_mean + mean, prev_var + var
        self.records[name] = (mean, var)
        self.calls[name] = self.calls.get(name, 0) + calls

    def add_batch(self, name: str, x: torch.Tensor) -> None:
        """Record the moments of one batch ``x`` of a BN layer's input."""
        mean, var = batch_moments(x)
        self.add(name, mean, var, 1)


def stats_hook(name: str, rec: Recorder):
    """A forward pre-hook for the BN layer ``name`` that records its input into ``rec`` while
    recording is on (and the layer does not record itself, under ghost batches)."""

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if rec.on and not rec.ghosts:
            rec.add_batch(name, args[0])  # this thread's records

    return record


def ghost_bn(m: nn.Module, name: str, rec: Recorder, batch: int, x: torch.Tensor) -> torch.Tensor:
    """``m``'s train-mode forward on several fixed batches of ``batch`` rows at once, each
    normalised with its own statistics ("ghost batches"), recording what the hooks would record
    for each batch. Anything else (one batch, a shorter last one) runs as BN itself does."""
    n = x.shape[0]
    if n % batch or n == batch:
        rec.add_batch(name, x)
        return type(m).forward(m, x)
    g = n // batch
    v = x.view(g, batch, *x.shape[1:])  # (batches, rows, channels, ...)
    mean, var, mean_sum, var_sum = ghost_moments(v)
    rec.add(name, mean_sum, var_sum, g)
    shape = [1, 1, -1] + [1] * (v.dim() - 3)
    scale = torch.rsqrt(var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight.view(shape)
    shift = -mean * scale
    if m.bias is not None:
        shift = shift + m.bias.view(shape)
    return torch.addcmul(shift, v, scale).reshape(x.shape)
