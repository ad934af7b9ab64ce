"""Fast Geometric Ensembling (Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, NeurIPS 2018,
"Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs", Section 5).

From the fine-tuned member 1, SGD (momentum and weight decay of the run, one optimizer for the
whole trajectory) continues with a triangular learning rate stepped every iteration; with
iteration i = 1, 2, ... counted from member 1, cycle length c iterations and
``t(i) = (((i - 1) mod c) + 1) / c``, the paper's eq. (2):

    lr(i) = (1 - 2 t) alpha_1 + 2 t alpha_2          for t <= 1/2
    lr(i) = (2 - 2 t) alpha_2 + (2 t - 1) alpha_1    for t >  1/2

so each cycle starts near ``alpha_1`` (the peak, ``--cycle-lr``), falls to ``alpha_2``
(``--fge-min-lr``, default ``alpha_1 / 100`` as in the paper's 0.05 / 0.0005) in the middle and
climbs back. A snapshot is taken at each minimum of the learning rate: after iteration
``c // 2 + k c`` (k = 0, 1, ...), i.e. in the middle of every cycle (for odd c the first of the
two equal minima). Member k + 2 is the k-th snapshot. ``c = cycle_epochs x`` batches per epoch
(``--cycle-epochs``; the paper uses 2-4 epochs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ensembles.methods.common import (
    Context,
    LocalMethod,
    LocalOptions,
    require_cycle,
    steps_per_epoch,
)
from ensembles.methods.registry import register_method
from ensembles.methods.trajectory import (
    Segment,
    load_model_state,
    load_optimizer_state,
    model_state,
    optimizer_state,
    run_trajectory,
)
from ensembles.recipe import Recipe, Stepper
from ensembles.training import TrainConfig, make_optimizer
from landscape.assets.datasets import dataset_info
from landscape.errors import UserError


@dataclass(frozen=True)
class FGEOptions(LocalOptions):
    """FGE's own option: ``fge_min_lr`` (``--fge-min-lr``), alpha_2 (None: alpha_1 / 100)."""

    fge_min_lr: float | None = None


@dataclass(frozen=True)
class FGEConfig:
    """FGE's hyperparameters: ``cycle_epochs`` (cycle length in epochs), ``max_lr`` (alpha_1)
    and ``min_lr`` (alpha_2; None means alpha_1 / 100)."""

    cycle_epochs: int
    max_lr: float
    min_lr: float | None = None

    def __post_init__(self) -> None:
        if not self.max_lr > 0:
            raise UserError(f"fge needs a positive --cycle-lr (alpha_1), got {self.max_lr!r}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.max_lr:
            raise UserError(f"--fge-min-lr (alpha_2) must be in [0, --cycle-lr], got {self.min_lr!r}")

    @property
    def alpha_2(self) -> float:
        return self.max_lr / 100 if self.min_lr is None else self.min_lr

    @classmethod
    def of(cls, run) -> "FGEConfig":
        require_cycle(run, "fge", "--cycle-epochs C (the cycle length in epochs) and --cycle-lr LR "
                      "(the peak learning rate alpha_1), e.g. --cycle-epochs 2 --cycle-lr 0.02")
        return cls(run.cycle_epochs, run.cycle_lr, run.options.fge_min_lr)


def fge_lr(i: int, cycle: int, alpha_1: float, alpha_2: float) -> float:
    """The learning rate of iteration ``i`` (1-based) of a triangular cycle of ``cycle``
    iterations (Garipov et al. 2018, eq. 2)."""
    if i < 1 or cycle < 2:
        raise ValueError(f"need i >= 1 and a cycle of >= 2 iterations, got i={i}, cycle={cycle}")
    t = ((i - 1) % cycle + 1) / cycle
    if t <= 0.5:
        return (1.0 - 2.0 * t) * alpha_1 + 2.0 * t * alpha_2
    return (2.0 - 2.0 * t) * alpha_2 + (2.0 * t - 1.0) * alpha_1


def fge_segments(members: int, cycle: int) -> list[Segment]:
    """Segments ending at the snapshots (members 2..K): iteration ``c // 2 + k c``."""
    ends = [cycle // 2 + k * cycle for k in range(members - 1)]
    starts = [1] + [e + 1 for e in ends[:-1]]
    return [Segment(k + 2, s, e - s + 1) for k, (s, e) in enumerate(zip(starts, ends))]


class _FGETrajectory:
    """SGD with momentum (one optimizer over all cycles), lr set before every step."""

    def __init__(self, model: nn.Module, run, cfg: FGEConfig, cycle: int, device) -> None:
        self.model, self.cfg, self.cycle, self.device = model, cfg, cycle, torch.device(device)
        tc = TrainConfig(epochs=1, lr=cfg.max_lr, wd=run.wd, momentum=run.momentum,
                         batch_size=run.batch_size, optimizer=run.optimizer,
                         label_smoothing=run.label_smoothing, mixup=run.mixup, cutmix=run.cutmix,
                         grad_clip=run.grad_clip, amp=run.amp)
        self.opt = make_optimizer(model, tc)
        self.recipe = Recipe(dataset_info(run.data).num_classes, run.label_smoothing, run.mixup,
                             run.cutmix, run.grad_clip, run.amp)

    def state(self) -> dict[str, torch.Tensor]:
        return {**model_state(self.model), **optimizer_state(self.model, self.opt)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        load_model_state(self.model, tensors)
        load_optimizer_state(self.model, self.opt, tensors)

    def segment(self, seed: int):
        stepper = Stepper(self.model, self.opt, self.recipe, self.device, seed)

        def step(xb, yb, it: int) -> float:
            lr = fge_lr(it, self.cycle, self.cfg.max_lr, self.cfg.alpha_2)
            for group in self.opt.param_groups:
                group["lr"] = lr
            stepper.step(xb, yb)
            return lr

        return step


def check(run, per_epoch: int) -> None:
    """Refuse, before member 1 is trained, a cycle too short for a triangle."""
    if run.cycle_epochs * per_epoch < 2:
        raise UserError("an FGE cycle needs at least 2 iterations; raise --cycle-epochs")


def run(ctx: Context) -> None:
    """Train FGE's snapshots (members 2..K) from member 1 into the run directory."""
    cfg = FGEConfig.of(ctx.config)
    per_epoch = steps_per_epoch(ctx.train_set(), ctx.config.batch_size)
    check(ctx.config, per_epoch)
    cycle = cfg.cycle_epochs * per_epoch
    segments = fge_segments(ctx.config.members, cycle)
    run_trajectory(ctx, "fge", segments,
                   lambda model: _FGETrajectory(model, ctx.config, cfg, cycle, ctx.device),
                   lambda seg: {"cycle_iterations": cycle, "snapshot_lr": fge_lr(
                       seg.first + seg.steps - 1, cycle, cfg.max_lr, cfg.alpha_2)})


@register_method("fge")
class FGE(LocalMethod):
    """Snapshots at the minima of a triangular per-iteration learning rate from member 1."""

    options = FGEOptions

    def hyperparameters(self, config) -> FGEConfig:
        return FGEConfig.of(config)

    def check_steps(self, config, per_epoch: int) -> None:
        check(config, per_epoch)

    def make_members(self, ctx: Context) -> None:
        run(ctx)
