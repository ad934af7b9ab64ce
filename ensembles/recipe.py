"""Training-step ingredients beyond plain SGD: soft targets (label smoothing, mixup, cutmix),
gradient clipping and mixed precision. Used by the transformer presets (Swin-T recipe)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Recipe:
    """How one optimisation step is taken (the defaults are a plain cross-entropy SGD step)."""

    num_classes: int
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    grad_clip: float | None = None
    amp: bool = False

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B, C) one-hot targets with ``smoothing`` spread uniformly over the classes."""
    onehot = F.one_hot(labels, num_classes).float()
    return onehot * (1.0 - smoothing) + smoothing / num_classes


def mix_batch(
    x: torch.Tensor, targets: torch.Tensor, *, mixup: float, cutmix: float,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of the batch with its reverse.

    With both enabled each batch picks one with probability 1/2 (timm's default). CutMix cuts a
    box over the trailing spatial dims (a segment for 1-D signals) and sets lambda to the kept
    fraction. Returns the mixed inputs, mixed targets and lambda.
    """
    use_cut = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    alpha = cutmix if use_cut else mixup
    lam = float(rng.beta(alpha, alpha))
    flipped = x.flip(0)
    if use_cut:
        x, lam = _cut(x, flipped, lam, rng)
    else:
        x = lam * x + (1.0 - lam) * flipped
    return x, lam * targets + (1.0 - lam) * targets.flip(0), lam


def _cut(x: torch.Tensor, other: torch.Tensor, lam: float, rng: np.random.Generator):
    spatial = x.shape[2:] if x.dim() > 2 else x.shape[1:]
    ratio = (1.0 - lam) ** (1.0 / len(spatial))
    slices, cut = [], 1
    for size in spatial:
        length = int(round(size * ratio))
        start = int(rng.integers(0, size - length + 1))
        slices.append(slice(start, start + length))
        cut *= length
    lead = (slice(None),) * (x.dim() - len(spatial))
    x = x.clone()
    x[lead + tuple(slices)] = other[lead + tuple(slices)]
    return x, 1.0 - cut / float(np.prod(spatial))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class Stepper:
    """Takes optimisation steps under a recipe (the AMP scaler lives here, one per fit)."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, recipe: Recipe,
                 device: torch.device, seed: int) -> None:
        self.model, self.opt, self.recipe, self.device = model, opt, recipe, device
        self.rng = np.random.default_rng(seed)
        cuda = device.type == "cuda"
        self.amp_dtype = (torch.float16 if cuda else torch.bfloat16) if recipe.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if recipe.amp and cuda else None

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        r = self.recipe
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            if r.mixes or r.label_smoothing > 0:
                targets = soft_targets(yb, r.num_classes, r.label_smoothing)
                if r.mixes:
                    xb, targets, _ = mix_batch(xb, targets, mixup=r.mixup, cutmix=r.cutmix,
                                               rng=self.rng)
                loss = soft_cross_entropy(self.model(xb), targets)
            else:
                loss = F.cross_entropy(self.model(xb).float(), yb)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if r.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), r.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return loss.item()
