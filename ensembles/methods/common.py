"""What the local methods share: their base class and options, the run context, batch streams,
weight vectors, BN-recomputed samples and state files in the run directory (the trajectory runner
of FGE and cSGLD is ``ensembles.methods.trajectory``).

A method never writes member files itself: it hands each finished model to ``Context.write``
(owned by ``ensembles.run``), which writes the checkpoint, its test probabilities and its record
into the run directory (``ensembles.rundir.RunDir``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ensembles.methods.registry import EnsembleMethod, MemberPlan, finetune_plan
from ensembles.rundir import RunDir
from ensembles.training import shuffled_batches
from landscape.assets.checkpoint import Checkpoint
from landscape.assets.datasets import load_dataset
from landscape.assets.resident import ArrayDataset, as_tensors
from landscape.atomic import atomic_path
from landscape.engine.bn import recompute_bn_
from landscape.engine.layout import ParamLayout
from landscape.errors import UserError

STATE_KEY = "landscape-state"
BN_BATCH_SIZE = 128  # the fixed BN-recompute batch of soups and planes (docs/architecture.md)


class Writer(Protocol):
    def __call__(self, index: int, model: nn.Module, *, parent: str, epochs: int,
                 lrs: list[float], lr: float | None, extra: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Context:
    """One local-method run: its configuration (a ``RunConfig``), run directory, member 1 (as
    saved in the run directory) and how to write a member (returns the file's sha256)."""

    config: Any
    run_dir: RunDir
    first: Checkpoint
    write: Writer
    data_root: str | None = None
    device: str | torch.device = "cpu"
    image: Any = None  # an image dataset's transform (landscape.ImageTransform), else None

    def seed(self, index: int) -> int:
        """Member ``index`` uses seed ``seed + index - 1`` (its data order and its noise)."""
        return self.config.seed + index - 1

    def train_set(self):
        return load_dataset(self.config.data, "train", self.data_root, train_transform=True, image=self.image)

    def bn_inputs(self) -> torch.Tensor:
        """The train split under the evaluation transform, for BN recompute (as soups use)."""
        return as_tensors(load_dataset(self.config.data, "train", self.data_root, image=self.image))[0]

    def n_train(self) -> int:
        return len(load_dataset(self.config.data, "train", self.data_root, image=self.image))

    def pending(self) -> list[int]:
        return [i for i in range(2, self.config.members + 1) if not self.run_dir.finished(i)]


# ----------------------------------------------------------------------------- the method


@dataclass(frozen=True)
class LocalOptions:
    """The option every local method has: ``init``, a fine-tuned checkpoint used as member 1
    instead of training it."""

    init: str | None = None


class LocalMethod(EnsembleMethod):
    """A local method (FGE, cSGLD, SWAG, KFAC-Laplace, SPRO): member 1 is a fine-tune of the one
    pre-trained checkpoint (or the ``init`` checkpoint); ``make_members`` makes members 2..K
    from it, one after another, on one process. Subclasses set ``options`` (a subclass of
    ``LocalOptions``) and ``hyperparameters``."""

    options: type = LocalOptions
    one_process = True

    def hyperparameters(self, config) -> Any:
        """The method's typed settings, resolved against the run (raises UserError)."""
        return config.options

    def validate(self, config) -> None:
        super().validate(config)
        self.hyperparameters(config)
        if len(config.pretrained) > 1:
            raise UserError(f"{self.name} starts from one pre-trained checkpoint, got "
                            f"{len(config.pretrained)}")

    def phases(self, config) -> list[list[int]]:
        return [[1]]  # members 2..K come from make_members, on one process

    def member_plan(self, config, index: int) -> MemberPlan:
        if index != 1:
            raise ValueError(f"{self.name} members >= 2 are made by its make_members")
        if config.init is not None:
            return MemberPlan(1, "init", 0, 0.0, config.seed, False)
        return finetune_plan(config, 1)

    def before_training(self, config, data_root: str | None) -> None:
        train_set = load_dataset(config.data, "train", data_root, train_transform=True)
        self.check_steps(config, steps_per_epoch(train_set, config.batch_size))

    def check_steps(self, config, per_epoch: int) -> None:
        """Refuse settings that cannot work with ``per_epoch`` batches per epoch."""


# ----------------------------------------------------------------------------- settings

# RunConfig recipe fields (and their defaults) that only FGE's and SWAG's SGD steps apply; cSGLD
# (its own Langevin update) and SPRO (SGD on the simplex's vertex) would silently ignore them.
RECIPE_DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "amp": False, "label_smoothing": 0.0,
                                   "mixup": 0.0, "cutmix": 0.0, "grad_clip": None}


def require_cycle(run, method: str, usage: str) -> None:
    """Refuse a method run without ``--cycle-epochs`` and ``--cycle-lr``; ``usage`` says what
    they mean for it and gives an example."""
    if run.cycle_epochs is None or run.cycle_lr is None:
        raise UserError(f"{method} needs {usage}")


def refuse_recipe(run, method: str) -> None:
    """Refuse recipe settings that ``method`` does not apply (instead of silently ignoring them)."""
    given = [k for k, v in RECIPE_DEFAULTS.items() if getattr(run, k) != v]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UserError(f"{method} does not apply {flags} (it takes its own fp32 SGD steps); fine-tune "
                        f"member 1 with them (--method local-de) and pass it as --init without them")


# ----------------------------------------------------------------------------- batches


def steps_per_epoch(dataset, batch_size: int) -> int:
    """How many batches ``ensembles.training.shuffled_batches`` yields per epoch."""
    n = len(dataset)
    if isinstance(dataset, ArrayDataset):
        return n // batch_size + (1 if n % batch_size > 1 else 0)
    return n // batch_size


def batch_stream(dataset, batch_size: int, *, seed: int, device) -> Iterator:
    """Endless shuffled mini-batches, epoch after epoch, seeded (the same as ``fit`` uses)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from shuffled_batches(dataset, batch_size, gen, device)


# ----------------------------------------------------------------------------- weights


def weight_vector(model: nn.Module) -> torch.Tensor:
    """(P,) float64 vector of every floating-point parameter (``landscape.engine.layout``)."""
    return ParamLayout.of(model).flatten(dict(model.named_parameters()))


def with_weights(model: nn.Module, vector: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (buffers included) with its parameters set from ``vector``."""
    out = copy.deepcopy(model).cpu()
    params = ParamLayout.of(out).unflatten(vector.detach().cpu())
    with torch.no_grad():
        for name, p in out.named_parameters():
            if name in params:
                p.copy_(params[name].to(p.dtype))
    return out.eval()


def sampled_model(base: nn.Module, vector: torch.Tensor, bn_inputs: torch.Tensor) -> nn.Module:
    """``base`` with weights ``vector`` and BN statistics recomputed on ``bn_inputs`` in batches
    of ``BN_BATCH_SIZE`` (``landscape.engine.bn.recompute_bn_``): a sample's BN buffers must match its
    own weights, not member 1's."""
    model = with_weights(base, vector)
    recompute_bn_(model, bn_inputs, batch_size=BN_BATCH_SIZE)
    return model


# ----------------------------------------------------------------------------- state files


def save_state(path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a method's state (SWAG moments, KFAC factors, simplex vertices, a trajectory's
    optimizer state) as safetensors with a JSON document, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={STATE_KEY: json.dumps(meta, sort_keys=True)})


def load_state(path, **expected: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The state in ``path`` when it exists and its document has every ``expected`` value
    (e.g. the sha256 of member 1 it was fitted around); None means fit it again."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get(STATE_KEY, "{}"))
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None
    if any(meta.get(k) != v for k, v in expected.items()):
        return None
    return tensors, meta
