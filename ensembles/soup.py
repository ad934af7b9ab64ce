"""Uniform model soups (Wortsman et al. 2022): average the members' weights, recompute BN."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from landscape.assets.modules import CheckpointLike, as_checkpoint
from landscape.engine.bn import recompute_bn_


def uniform_soup(
    models: Sequence[CheckpointLike], bn_inputs: torch.Tensor | None = None, *, bn_batch_size: int = 128
) -> nn.Module:
    """A new model whose floating-point state is the mean of ``models``' states; BatchNorm
    statistics are then recomputed on ``bn_inputs`` (the train split, evaluation transform)
    when given. Integer buffers come from the first model. The members are not modified.
    Members are ``nn.Module``s of one architecture, ``Checkpoint``s or checkpoint files."""
    if not models:
        raise ValueError("a soup needs at least one model")
    models = [m if isinstance(m, nn.Module) else as_checkpoint(m).model for m in models]
    soup = copy.deepcopy(models[0]).cpu().eval()
    states = [m.state_dict() for m in models]
    with torch.no_grad():
        for name, value in soup.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.stack([s[name].detach().cpu().double() for s in states])
                            .mean(0).to(value.dtype))
    if bn_inputs is not None:
        recompute_bn_(soup, bn_inputs.cpu(), batch_size=bn_batch_size)
    return soup
