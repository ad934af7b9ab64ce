"""Cyclical stochastic-gradient Langevin dynamics (Zhang, Li, Zhang, Chen, Wilson, ICLR 2020,
"Cyclical Stochastic Gradient MCMC for Bayesian Deep Learning", Algorithm 1; the authors'
reference code ``ruqizhang/csgmcmc``, SGLD variant).

From the fine-tuned member 1, with iteration k = 1, 2, ... counted from member 1 and L
iterations per cycle (``--cycle-epochs`` x batches per epoch), the step size is the paper's
cosine, restarted every cycle and stepped every iteration:

    alpha_k = alpha_0 / 2 * (cos(pi * ((k - 1) mod L) / L) + 1)       (alpha_0 = --cycle-lr)

With ``r_k = ((k - 1) mod L) / L`` the first fraction beta of a cycle (``--csgld-exploration``,
default 0.8) explores with plain SGD steps, the rest samples with SGLD steps:

    theta <- theta - alpha_k * (grad L_B(theta) + wd * theta)                      r_k <  beta
    theta <- theta - alpha_k * (grad L_B(theta) + wd * theta)
                   + sqrt(2 * alpha_k * T / N) * eps,   eps ~ N(0, I)              r_k >= beta

where L_B is the mean cross-entropy of the mini-batch, wd the run's weight decay (the Gaussian
prior), N the size of the train split and T the temperature (``--csgld-temperature``, default 1:
the posterior itself). This is SGLD on U(theta) = N * L(theta) + N * wd / 2 * |theta|^2 with step
size eta = alpha_k / N: theta - eta grad U + sqrt(2 eta T) eps, the reference code's
``(2 * lr * temperature / datasize) ** 0.5`` noise with its momentum term off (no momentum, as in
SGLD). Every trainable floating-point parameter (BatchNorm affine included) gets the update and
the noise; frozen ones (``requires_grad`` False) stay as they are. BN running statistics are
updated by the forward passes as in training. Member i >= 2 is the sample at the end of cycle
i - 1 (one sample per cycle). The update is its own (fp32, no optimizer): the recipe settings
``--optimizer``, ``--amp``, ``--label-smoothing``, ``--mixup``, ``--cutmix`` and ``--grad-clip``
are refused rather than ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ensembles.methods.common import (
    Context,
    LocalMethod,
    LocalOptions,
    refuse_recipe,
    require_cycle,
    steps_per_epoch,
)
from ensembles.methods.registry import register_method
from ensembles.methods.trajectory import Segment, load_model_state, model_state, run_trajectory
from landscape.errors import UserError


@dataclass(frozen=True)
class CSGLDOptions(LocalOptions):
    """cSGLD's own options: the temperature T (``--csgld-temperature``) and the SGD fraction
    beta of every cycle (``--csgld-exploration``)."""

    csgld_temperature: float = 1.0
    csgld_exploration: float = 0.8

    def __post_init__(self) -> None:
        if not self.csgld_temperature >= 0:
            raise UserError(f"--csgld-temperature must be >= 0, got {self.csgld_temperature!r}")
        if not 0 <= self.csgld_exploration < 1:
            raise UserError(f"--csgld-exploration (beta) must be in [0, 1), got "
                            f"{self.csgld_exploration!r}")


@dataclass(frozen=True)
class CSGLDConfig:
    """cSGLD's hyperparameters: ``cycle_epochs`` (cycle length), ``lr`` (alpha_0),
    ``temperature`` (T) and ``exploration`` (beta, the SGD fraction of every cycle)."""

    cycle_epochs: int
    lr: float
    temperature: float = 1.0
    exploration: float = 0.8

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise UserError(f"csgld needs a positive --cycle-lr (alpha_0), got {self.lr!r}")

    @classmethod
    def of(cls, run) -> "CSGLDConfig":
        require_cycle(run, "csgld", "--cycle-epochs C (epochs per cycle) and --cycle-lr LR (the initial "
                      "step size alpha_0), e.g. --cycle-epochs 5 --cycle-lr 0.04")
        refuse_recipe(run, "csgld")
        return cls(run.cycle_epochs, run.cycle_lr, run.options.csgld_temperature,
                   run.options.csgld_exploration)


def csgld_lr(k: int, cycle: int, alpha_0: float) -> float:
    """Step size of iteration ``k`` (1-based), Zhang et al. 2020, eq. (1)."""
    return alpha_0 / 2.0 * (math.cos(math.pi * ((k - 1) % cycle) / cycle) + 1.0)


def is_sampling(k: int, cycle: int, exploration: float) -> bool:
    """True in the sampling stage: ``r_k = ((k - 1) mod L) / L >= beta``."""
    return ((k - 1) % cycle) / cycle >= exploration


def noise_std(lr: float, temperature: float, n_data: int) -> float:
    """The standard deviation of the SGLD noise: ``sqrt(2 * lr * T / N)``."""
    return math.sqrt(2.0 * lr * temperature / n_data)


@torch.no_grad()
def csgld_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], *,
                  lr: float, wd: float, sampling: bool, temperature: float, n_data: int,
                  generator: torch.Generator) -> None:
    """One cSGLD step in place: ``p -= lr * (g + wd * p)``, plus ``noise_std * eps`` when
    sampling (``eps`` drawn on the CPU from ``generator``, so it does not depend on the device)."""
    std = noise_std(lr, temperature, n_data) if sampling else 0.0
    for p, g in zip(params, grads):
        drift = wd * p if g is None else g + wd * p
        p.sub_(lr * drift)
        if std > 0:
            p.add_(std * torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device))


class _CSGLDTrajectory:
    def __init__(self, model: nn.Module, run, cfg: CSGLDConfig, cycle: int, n_data: int) -> None:
        self.model, self.run, self.cfg, self.cycle, self.n_data = model, run, cfg, cycle, n_data

    def state(self) -> dict[str, torch.Tensor]:
        return model_state(self.model)  # no momentum: the weights are the whole state

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        load_model_state(self.model, tensors)

    def segment(self, seed: int):
        gen = torch.Generator().manual_seed(seed + 7919)  # the noise's own stream
        params = [p for p in self.model.parameters() if p.is_floating_point() and p.requires_grad]

        def step(xb, yb, it: int) -> float:
            lr = csgld_lr(it, self.cycle, self.cfg.lr)
            for p in params:
                p.grad = None
            F.cross_entropy(self.model(xb).float(), yb).backward()
            csgld_update_(params, [p.grad for p in params], lr=lr, wd=self.run.wd,
                          sampling=is_sampling(it, self.cycle, self.cfg.exploration),
                          temperature=self.cfg.temperature, n_data=self.n_data, generator=gen)
            return lr

        return step


def run(ctx: Context) -> None:
    """Run cSGLD from member 1; the sample at the end of every cycle becomes a member."""
    cfg = CSGLDConfig.of(ctx.config)
    cycle = cfg.cycle_epochs * steps_per_epoch(ctx.train_set(), ctx.config.batch_size)
    segments = [Segment(i, (i - 2) * cycle + 1, cycle) for i in range(2, ctx.config.members + 1)]
    n_data = ctx.n_train()
    run_trajectory(ctx, "csgld", segments,
                   lambda model: _CSGLDTrajectory(model, ctx.config, cfg, cycle, n_data),
                   lambda seg: {"cycle_iterations": cycle, "temperature": cfg.temperature,
                                "exploration": cfg.exploration, "n_data": n_data})


@register_method("csgld")
class CSGLD(LocalMethod):
    """One cyclical-SGLD sample per cycle from member 1."""

    options = CSGLDOptions

    def hyperparameters(self, config) -> CSGLDConfig:
        return CSGLDConfig.of(config)

    def make_members(self, ctx: Context) -> None:
        run(ctx)
