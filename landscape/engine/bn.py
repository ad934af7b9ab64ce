"""BatchNorm policies for points that are not trained checkpoints (docs/architecture.md, "BatchNorm policy").

- ``recompute``: reset the running statistics and average them cumulatively over the train split,
  in batches of a fixed size and order, with only the BatchNorm layers in train mode.
- ``interpolate``: combine the checkpoints' buffers with the point's affine coefficients.
- ``keep``: use the origin's buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from landscape.errors import UserError

POLICIES = ("recompute", "interpolate", "keep")


def bn_modules(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """BatchNorm layers that track running statistics, with their qualified names."""
    return [
        (n, m) for n, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    ]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(bn_modules(model))


def resolve_policy(policy: str | None, model: nn.Module) -> str:
    """Validate ``policy``; None means ``recompute`` for BN models and ``keep`` otherwise."""
    if policy is None:
        return "recompute" if has_batchnorm(model) else "keep"
    if policy not in POLICIES:
        raise UserError(f"unknown BN policy {policy!r}; expected one of {', '.join(POLICIES)}")
    return policy


def fixed_batches(inputs: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``batch_size`` rows (the last one may be shorter): the one fixed
    partition used for BN statistics, whatever batching the engine uses elsewhere."""
    for start in range(0, len(inputs), batch_size):
        yield inputs[start : start + batch_size]


@torch.no_grad()
def recompute_bn_(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 128,
                  transform=None) -> None:
    """Recompute ``model``'s BN running statistics in place from ``inputs``.

    Equivalent to ``torch.optim.swa_utils.update_bn`` over ``fixed_batches(inputs, batch_size)``,
    except that only BN layers switch to train mode (dropout stays off, so it is deterministic).
    The model's modes and the BN momenta are restored afterwards. ``transform`` (e.g. a uint8
    image decoder) is applied to every batch before the model sees it.
    """
    layers = bn_modules(model)
    if not layers:
        return
    if len(inputs) == 0:
        raise UserError("BN recompute needs a non-empty train split")
    saved = [(m, m.momentum, m.training) for _, m in layers]
    was_training = model.training
    try:
        model.eval()
        for _, m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over batches
            m.train()
        for xb in fixed_batches(inputs, batch_size):
            model(xb if transform is None else transform(xb))
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        model.train(was_training)


def bn_buffer_names(model: nn.Module) -> list[str]:
    """The names of the BN buffers of ``model``'s state dict (running mean, variance, count)."""
    return [f"{n}.{b}" if n else b for n, _ in bn_modules(model)
            for b in ("running_mean", "running_var", "num_batches_tracked")]


def combine_buffers(states: Sequence[dict[str, torch.Tensor]], coefficients: Sequence[float],
                    names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The ``interpolate`` policy: each floating-point buffer as the affine combination of the
    checkpoints' buffers with the point's coefficients (in float64); counts are the first's."""
    return {n: (sum(c * s[n].double() for c, s in zip(coefficients, states)).float()
                if states[0][n].is_floating_point() else states[0][n]) for n in names}


def point_buffers(ckpts: Sequence[Any], policy: str, members: Callable[[Any], Sequence[int]],
                  coefficients: Callable[[Any], Sequence[float]]) -> Callable[[Any], dict[str, torch.Tensor]] | None:
    """The BN buffers of every point of a grid whose points are affine combinations of
    checkpoints (``ckpts``: objects with a ``.model``): ``members(index)`` names the point's
    checkpoints and ``coefficients(index)`` its weights on them. ``keep``: the first member's
    buffers; ``interpolate``: their combination (``combine_buffers``); ``recompute``: None (the
    engine recomputes them)."""
    if policy == "recompute":
        return None
    names = bn_buffer_names(ckpts[0].model)
    states = [{n: c.model.state_dict()[n] for n in names} for c in ckpts]

    def buffers(index) -> dict[str, torch.Tensor]:
        which = list(members(index))
        if policy == "keep":
            return states[which[0]]
        return combine_buffers([states[k] for k in which], coefficients(index), names)

    return buffers
