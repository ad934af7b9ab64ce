"""Pre-training and fine-tuning (docs/architecture.md).

Fine-tuning trains all layers after replacing the pre-trained head by a fresh, seeded head, with
cross-entropy, SGD with momentum 0.9 and the per-epoch cosine schedule. Both functions return a
new model; the caller's checkpoint is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ensembles.inputs import check_fits, image_record, training_transform
from ensembles.recipe import Recipe, Stepper
from ensembles.schedules import cosine_lr
from landscape.assets.checkpoint import CheckpointMeta
from landscape.assets.datasets import dataset_info, load_dataset
from landscape.assets.heads import reset_head
from landscape.assets.images import ImageTransform
from landscape.assets.models import build_model
from landscape.assets.modules import CheckpointLike, as_checkpoint
from landscape.assets.resident import ArrayDataset, as_tensors
from landscape.assets.resolve import dataset_name, model_transform
from landscape.assets.userdata import Data
from landscape.errors import UserError
from landscape.progress import progress


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run.

    The defaults are the paper's SGD recipe. The transformer recipe (Swin-T) adds
    ``optimizer="adamw"``, ``warmup_epochs``, ``label_smoothing``, ``mixup``/``cutmix`` (Beta
    alphas), ``grad_clip`` (max gradient norm) and ``amp`` (fp16 autocast with a gradient scaler
    on GPU, bf16 autocast on CPU).
    """

    epochs: int
    lr: float
    wd: float = 5e-4
    momentum: float = 0.9
    batch_size: int = 128
    seed: int = 0
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    grad_clip: float | None = None
    amp: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            raise UserError(f"seed must be an integer in 0 .. 2**63 - 1, got {self.seed!r}")
        if not self.lr > 0:
            raise UserError(f"lr must be positive, got {self.lr!r}")
        if not self.wd >= 0:
            raise UserError(f"wd must be >= 0, got {self.wd!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; expected one of "
                            f"{', '.join(OPTIMIZERS)}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"warmup_epochs must be in 0..{self.epochs - 1}, "
                            f"got {self.warmup_epochs!r}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.mixup < 0 or self.cutmix < 0:
            raise UserError("mixup and cutmix are Beta alphas: 0 (off) or positive")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise UserError(f"grad_clip must be positive, got {self.grad_clip!r}")


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """A fresh optimizer (empty state): SGD with momentum, or AdamW for transformer recipes."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.wd)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.wd)


@dataclass(frozen=True)
class TrainResult:
    """A trained model (eval mode, on CPU), its checkpoint metadata and its test accuracy (%)."""

    model: nn.Module
    meta: CheckpointMeta
    test_acc: float


def pretrain(
    arch: str,
    data: str | Data,
    config: TrainConfig,
    *,
    arch_kwargs: dict | None = None,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    image: ImageTransform | None = None,
) -> TrainResult:
    """Train ``arch`` from a seeded random initialisation on ``data`` (a dataset name or your
    own ``landscape.Data``, see ``landscape.assets.resolve.dataset_name``). ``image``: an image
    dataset's transform settings (unset ones from the dataset's and the model's defaults); the
    transform used is recorded in the checkpoint (``meta.extra["image"]``).

    Example:
        >>> res = pretrain("mnist1d_cnn", "mnist1d-source", TrainConfig(epochs=15, lr=0.05))
    """
    data = dataset_name(data)
    info = dataset_info(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(arch, info.num_classes, arch_kwargs, trust_arch=True)  # the caller named it
    transform = model_transform(data, image, arch=arch, model=model, arch_kwargs=arch_kwargs)
    meta = CheckpointMeta(arch, info.num_classes, dict(arch_kwargs or {}), data,
                          method="pretrain", seed=config.seed, epochs=config.epochs,
                          extra={"lr": config.lr, "wd": config.wd, **image_record(transform)})
    return _fit(model, meta, data, config, data_root, device, desc="pretrain", image=transform)


def finetune(
    pretrained: CheckpointLike,
    data: str | Data,
    config: TrainConfig,
    *,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    method: str = "finetune",
    member: int | None = None,
    image: ImageTransform | None = None,
) -> TrainResult:
    """Fine-tune all layers of ``pretrained`` (a ``Checkpoint``, a file, or your own ``nn.Module``,
    see ``landscape.as_checkpoint``) on ``data`` (a dataset name or ``landscape.Data``) with a
    fresh head seeded by config.seed. ``image`` as in ``pretrain`` (a ``timm:`` model's defaults
    come from its pretrained configuration).

    Example:
        >>> pre = load_checkpoint("pre.safetensors")
        >>> res = finetune(pre, "mnist1d", TrainConfig(epochs=20, lr=0.02, seed=1))
    """
    data = dataset_name(data)
    info = dataset_info(data)
    pretrained = as_checkpoint(pretrained)
    model = copy.deepcopy(pretrained.model)
    reset_head(model, info.num_classes, seed=config.seed)
    transform = training_transform(pretrained, data, image)
    meta = CheckpointMeta(
        pretrained.meta.arch, info.num_classes, dict(pretrained.meta.arch_kwargs), data,
        method=method, member=member, seed=config.seed, epochs=config.epochs,
        parent=pretrained.sha256, extra={"lr": config.lr, "wd": config.wd, **image_record(transform)},
    )
    return _fit(model, meta, data, config, data_root, device, desc=f"finetune seed {config.seed}",
                image=transform)


def _fit(model, meta, data, config, data_root, device, *, desc, image) -> TrainResult:
    fitted = fit(model, data, config, data_root=data_root, device=device, desc=desc, image=image)
    acc = evaluate_accuracy(fitted.model, load_dataset(data, "test", data_root, image=image), device)
    return TrainResult(fitted.model.cpu(), meta, acc)


@dataclass(frozen=True)
class FitResult:
    """A trained copy of the model (eval mode) and the learning rate of every epoch."""

    model: nn.Module
    lrs: tuple[float, ...]
    train_loss: float


def fit(
    model: nn.Module,
    data: str,
    config: TrainConfig,
    *,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    desc: str = "train",
    image: ImageTransform | None = None,
) -> FitResult:
    """Train a copy of ``model`` for ``config.epochs`` epochs with a fresh SGD optimizer
    (empty momentum) and the per-epoch cosine schedule from ``config.lr``; ``image``: an image
    dataset's (complete) transform, under the training augmentation."""
    model = copy.deepcopy(model).to(device)
    train_set = load_dataset(data, "train", data_root, train_transform=True, image=image)
    check_fits(model, train_set, data, device)
    opt = make_optimizer(model, config)
    recipe = Recipe(dataset_info(data).num_classes, config.label_smoothing, config.mixup,
                    config.cutmix, config.grad_clip, config.amp)
    stepper = Stepper(model, opt, recipe, torch.device(device), config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    lrs, loss = [], float("nan")
    with progress(total=config.epochs, desc=desc, unit="epoch") as bar:
        for epoch in range(1, config.epochs + 1):
            lr = cosine_lr(config.lr, epoch, config.epochs, config.warmup_epochs)
            for group in opt.param_groups:
                group["lr"] = lr
            lrs.append(lr)
            batches = shuffled_batches(train_set, config.batch_size, gen, device)
            loss = train_epoch(model, opt, batches, stepper)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.4g}")
            bar.update(1)
    return FitResult(model.eval(), tuple(lrs), loss)


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, batches,
                stepper: Stepper | None = None) -> float:
    """One pass over ``batches`` (plain cross-entropy steps unless a recipe's ``stepper`` is
    given); returns the mean training loss."""
    model.train()
    if stepper is None:
        stepper = Stepper(model, opt, Recipe(num_classes=0), torch.device("cpu"), 0)
    total, n = 0.0, 0
    for xb, yb in batches:
        total += stepper.step(xb, yb) * len(yb)
        n += len(yb)
    return total / max(n, 1)


def shuffled_batches(dataset: Dataset, batch_size: int, gen: torch.Generator, device) -> Iterator:
    """One epoch of shuffled mini-batches drawn with ``gen``, on ``device``; resident tensors
    are indexed directly (no DataLoader cost)."""
    if isinstance(dataset, ArrayDataset):
        perm = torch.randperm(len(dataset), generator=gen)
        x, y = dataset.inputs.to(device), dataset.labels.to(device)
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size].to(device)
            if len(idx) > 1:  # BatchNorm cannot train on a single sample
                yield x[idx], y[idx]
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen,
                        drop_last=True)
    for xb, yb in loader:
        yield xb.to(device), yb.to(device)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataset: Dataset, device, batch_size: int = 1024) -> float:
    """Test accuracy in percent (model in eval mode)."""
    model.eval()
    x, y = as_tensors(dataset)
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        correct += int((logits.argmax(-1).cpu() == y[start : start + batch_size]).sum())
    return 100.0 * correct / len(y)


@torch.no_grad()
def predict_probs(model: nn.Module, dataset: Dataset, device, batch_size: int = 1024) -> np.ndarray:
    """(N, C) float32 softmax probabilities, rows in dataset order (model in eval mode)."""
    model.eval()
    x, _ = as_tensors(dataset)
    out = [torch.softmax(model(x[s : s + batch_size].to(device)).float(), -1).cpu()
           for s in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.float32)
