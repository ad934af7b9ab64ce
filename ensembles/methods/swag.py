"""SWA-Gaussian (Maddox, Garipov, Izmailov, Vetrov, Wilson, NeurIPS 2019, "A Simple Baseline
for Bayesian Uncertainty in Deep Learning", Algorithm 1; reference code ``wjmaddox/swa_gaussian``).

From the fine-tuned member 1, SGD (fresh optimizer, the run's momentum and weight decay)
continues for ``--cycle-epochs`` S epochs at the SWA learning rate ``--cycle-lr``, either
constant (``--swag-schedule constant``, the paper's choice) or cyclic (``cyclic``: every
collection interval decays linearly from ``--cycle-lr`` to ``--fge-min-lr``, default 1/100 of it,
as in SWA's cyclical schedule). The weights w_1..w_n are collected exactly c = ``--swag-collect``
times per epoch (default once, at the end of each epoch): after steps ``round((j + 1) * B / c)``
(halves rounded up) of every epoch of B batches, j = 0..c-1, so n = S * c (c > B is refused), into

    mean  = (1/n) sum_i w_i,        sq_mean = (1/n) sum_i w_i^2
    Sigma_diag = max(sq_mean - mean^2, 1e-30)
    D = [w_i - mean_i] for the last R collections (R = --swag-rank, default 20; mean_i is the
        running mean right after collecting w_i, as the reference code does)

over every floating-point parameter (BatchNorm affine included). A sample is

    w = mean + sqrt(s) * (Sigma_diag^(1/2) z_1 + D^T z_2 / sqrt(max(R' - 1, 1))),  z ~ N(0, I)

with R' the number of columns of D and s = ``--sample-scale``, a covariance (variance) scale as
for kfac-laplace: the samples' covariance is ``s * (Sigma_diag + D^T D / (R' - 1))`` (default
0.5: the paper's 1/sqrt(2) factors). Members 2..K are K-1 seeded samples with BN statistics recomputed on the
train split. The moments are kept in ``swag-state.safetensors`` so a rerun does not collect them
again.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ensembles.methods.common import (
    Context,
    LocalMethod,
    LocalOptions,
    batch_stream,
    load_state,
    require_cycle,
    sampled_model,
    save_state,
    steps_per_epoch,
    weight_vector,
)
from ensembles.methods.registry import register_method
from ensembles.recipe import Recipe, Stepper
from ensembles.training import TrainConfig, make_optimizer
from landscape.assets.datasets import dataset_info
from landscape.errors import UserError
from landscape.progress import progress

SCHEDULES = ("constant", "cyclic")


@dataclass(frozen=True)
class SWAGOptions(LocalOptions):
    """SWAG's own options (the flags ``--swag-rank``, ``--swag-collect``, ``--swag-schedule``,
    ``--sample-scale`` and, for the cyclic schedule, ``--fge-min-lr``; None: the default)."""

    fge_min_lr: float | None = None
    swag_rank: int = 20
    swag_collect: int = 1
    swag_schedule: str = "constant"
    sample_scale: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.swag_rank, int) or self.swag_rank < 1:
            raise UserError(f"--swag-rank must be a positive integer, got {self.swag_rank!r}")
        if not isinstance(self.swag_collect, int) or self.swag_collect < 1:
            raise UserError(f"--swag-collect must be a positive integer, got {self.swag_collect!r}")
        if self.swag_schedule not in SCHEDULES:
            raise UserError(f"unknown --swag-schedule {self.swag_schedule!r}; expected one of "
                            f"{', '.join(SCHEDULES)}")
        if self.sample_scale is not None and not self.sample_scale >= 0:
            raise UserError(f"--sample-scale must be >= 0, got {self.sample_scale!r}")


@dataclass(frozen=True)
class SWAGConfig:
    """SWAG's hyperparameters (see the module docstring; ``SWAGOptions`` checks the values of
    ``rank``, ``collect_per_epoch``, ``schedule`` and ``scale``)."""

    epochs: int
    lr: float
    rank: int = 20
    collect_per_epoch: int = 1
    schedule: str = "constant"
    min_lr: float | None = None
    scale: float = 0.5

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise UserError(f"swag needs a positive --cycle-lr (the SWA learning rate), got {self.lr!r}")
        if self.epochs * self.collect_per_epoch < 2:  # one collected model has no spread to sample
            raise UserError(f"swag collects {self.epochs * self.collect_per_epoch} weight vector over "
                            f"--cycle-epochs {self.epochs} with --swag-collect {self.collect_per_epoch}; "
                            "it needs at least 2 (raise either)")

    @classmethod
    def of(cls, run) -> "SWAGConfig":
        require_cycle(run, "swag", "--cycle-epochs S (epochs of collection) and --cycle-lr LR (the SWA "
                      "learning rate), e.g. --cycle-epochs 5 --cycle-lr 0.02")
        o = run.options
        scale = 0.5 if o.sample_scale is None else o.sample_scale
        return cls(run.cycle_epochs, run.cycle_lr, o.swag_rank, o.swag_collect, o.swag_schedule,
                   o.fge_min_lr, scale)


class SwagMoments:
    """Running first and second moments and the last ``rank`` deviations of collected weights
    (the state that accumulates; the maths of sampling is in ``sample``)."""

    def __init__(self, size: int, rank: int) -> None:
        self.rank = rank
        self.count = 0
        self.mean = torch.zeros(size, dtype=torch.float64)
        self.sq_mean = torch.zeros(size, dtype=torch.float64)
        self.deviations = torch.zeros(0, size, dtype=torch.float32)  # (R', P), oldest first

    def collect(self, w: torch.Tensor) -> None:
        """Add one weight vector (P,)."""
        w = w.detach().to(torch.float64).cpu()
        n = self.count
        self.mean = (self.mean * n + w) / (n + 1)
        self.sq_mean = (self.sq_mean * n + w * w) / (n + 1)
        self.count = n + 1
        dev = (w - self.mean).to(torch.float32)[None]
        self.deviations = torch.cat([self.deviations, dev])[-self.rank:]

    def variance(self) -> torch.Tensor:
        """The diagonal covariance ``max(E[w^2] - E[w]^2, 1e-30)``."""
        return torch.clamp(self.sq_mean - self.mean ** 2, min=1e-30)

    def sample(self, scale: float, *, generator: torch.Generator) -> torch.Tensor:
        """A (P,) float64 sample (Maddox et al. 2019, eq. 1 with the reference code's scale)."""
        z1 = torch.randn(self.mean.shape, generator=generator, dtype=torch.float64)
        rand = self.variance().sqrt() * z1
        r = len(self.deviations)
        if r:
            z2 = torch.randn(r, generator=generator, dtype=torch.float64)
            rand = rand + self.deviations.double().T @ z2 / math.sqrt(max(r - 1, 1))
        return self.mean + math.sqrt(scale) * rand

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "sq_mean": self.sq_mean, "deviations": self.deviations}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], rank: int, count: int) -> "SwagMoments":
        out = cls(len(tensors["mean"]), rank)
        out.mean, out.sq_mean, out.deviations = tensors["mean"], tensors["sq_mean"], tensors["deviations"]
        out.count = count
        return out


def collection_steps(per_epoch: int, collect: int) -> list[int]:
    """The steps (1-based, within every epoch of ``per_epoch`` batches) after which the weights
    are collected: ``round((j + 1) * per_epoch / collect)`` (halves up), j = 0..collect-1; the
    last is the epoch's end. Raises UserError when ``collect`` exceeds ``per_epoch``."""
    if collect > per_epoch:
        raise UserError(f"--swag-collect {collect} exceeds the {per_epoch} batches of an epoch; "
                        f"collect at most once per batch (--swag-collect {per_epoch} or less)")
    return [(2 * (j + 1) * per_epoch + collect) // (2 * collect) for j in range(collect)]


def swa_lr(step: int, points: list[int], cfg: SWAGConfig) -> float:
    """Learning rate of ``step`` (1-based, within an epoch; ``points`` from ``collection_steps``):
    constant, or a linear decay over every collection interval from ``lr`` to ``min_lr``, reached
    at the collection (SWA's cyclical schedule)."""
    if cfg.schedule == "constant":
        return cfg.lr
    low = cfg.lr / 100 if cfg.min_lr is None else cfg.min_lr
    end = next(p for p in points if p >= step)
    start = max([0] + [p for p in points if p < step])
    t = (step - start) / (end - start)
    return (1 - t) * cfg.lr + t * low


def check(run, per_epoch: int) -> None:
    """Refuse, before member 1 is trained, settings that cannot work with ``per_epoch`` batches."""
    collection_steps(per_epoch, SWAGConfig.of(run).collect_per_epoch)


def collect(ctx: Context, cfg: SWAGConfig) -> SwagMoments:
    """Run the SWA phase from member 1 and gather the moments (seeded by member 1's seed + 1000)."""
    run = ctx.config
    model = copy.deepcopy(ctx.first.model).to(ctx.device).train()
    train_set = ctx.train_set()
    per_epoch = steps_per_epoch(train_set, run.batch_size)
    points = collection_steps(per_epoch, cfg.collect_per_epoch)
    opt = make_optimizer(model, TrainConfig(epochs=1, lr=cfg.lr, wd=run.wd, momentum=run.momentum,
                                            optimizer=run.optimizer))
    recipe = Recipe(dataset_info(run.data).num_classes, run.label_smoothing, run.mixup, run.cutmix,
                    run.grad_clip, run.amp)
    seed = ctx.seed(1) + 1000
    stepper = Stepper(model, opt, recipe, torch.device(ctx.device), seed)
    batches = batch_stream(train_set, run.batch_size, seed=seed, device=ctx.device)
    moments = SwagMoments(len(weight_vector(model)), cfg.rank)
    with progress(total=cfg.epochs * per_epoch, desc="swag", unit="step") as bar:
        for _ in range(cfg.epochs):
            for step in range(1, per_epoch + 1):
                for group in opt.param_groups:
                    group["lr"] = swa_lr(step, points, cfg)
                stepper.step(*next(batches))
                if step in points:
                    moments.collect(weight_vector(model))
                bar.update(1)
    return moments


def run(ctx: Context) -> None:
    """Collect SWAG's moments (or reuse ``swag-state.safetensors``) and write K-1 samples."""
    cfg = SWAGConfig.of(ctx.config)
    pending = ctx.pending()
    if not pending:
        return
    path = ctx.run_dir.state_path("swag")
    found = load_state(path, member1=ctx.first.sha256, method="swag")
    if found is None:
        moments = collect(ctx, cfg)
        save_state(path, moments.tensors(), {"member1": ctx.first.sha256, "method": "swag",
                                             "count": moments.count, "rank": cfg.rank})
    else:
        moments = SwagMoments.from_tensors(found[0], cfg.rank, found[1]["count"])
    bn_inputs = ctx.bn_inputs()
    for i in pending:
        gen = torch.Generator().manual_seed(ctx.seed(i))
        model = sampled_model(ctx.first.model, moments.sample(cfg.scale, generator=gen), bn_inputs)
        ctx.write(i, model, parent=ctx.first.sha256, epochs=cfg.epochs, lrs=[], lr=cfg.lr,
                  extra={"sample": i - 1, "scale": cfg.scale, "collected": moments.count,
                         "rank": len(moments.deviations), "state": path.name})


@register_method("swag")
class SWAG(LocalMethod):
    """Samples of the SWA Gaussian fitted along an SGD run from member 1."""

    options = SWAGOptions

    def hyperparameters(self, config) -> SWAGConfig:
        return SWAGConfig.of(config)

    def check_steps(self, config, per_epoch: int) -> None:
        check(config, per_epoch)

    def make_members(self, ctx: Context) -> None:
        run(ctx)
