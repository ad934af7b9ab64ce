"""What the local methods share: the run context, batch streams, weight vectors, BN-recomputed
samples, state files in the run directory, and the trajectory runner of FGE and cSGLD.

A method never writes member files itself: it hands each finished model to ``Context.write``
(owned by ``ensembles.run``), which writes the checkpoint, its test probabilities and its record
under the run-directory contract.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ensembles.training import _batches
from landscape.engine.bn import recompute_bn_
from landscape.assets.checkpoint import Checkpoint
from landscape.assets.datasets import ArrayDataset, as_tensors, load_dataset
from landscape.errors import UserError
from landscape.engine.layout import ParamLayout
from landscape.progress import progress

STATE_KEY = "landscape-state"
BN_BATCH_SIZE = 128  # the fixed BN-recompute batch of soups and planes (design.md, "BatchNorm policy")


class Writer(Protocol):
    def __call__(self, index: int, model: nn.Module, *, parent: str, epochs: int,
                 lrs: list[float], lr: float | None, extra: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Context:
    """One local-method run: its configuration (a ``RunConfig``), run directory, member 1 (as
    saved in the run directory) and how to write a member (returns the file's sha256)."""

    config: Any
    out: Path
    first: Checkpoint
    write: Writer
    finished: Callable[[int], bool]
    data_root: str | None = None
    device: str | torch.device = "cpu"

    def seed(self, index: int) -> int:
        """Member ``index`` uses seed ``seed + index - 1`` (its data order and its noise)."""
        return self.config.seed + index - 1

    def train_set(self):
        return load_dataset(self.config.data, "train", self.data_root, train_transform=True)

    def bn_inputs(self) -> torch.Tensor:
        """The train split under the evaluation transform, for BN recompute (as soups use)."""
        return as_tensors(load_dataset(self.config.data, "train", self.data_root))[0]

    def n_train(self) -> int:
        return len(load_dataset(self.config.data, "train", self.data_root))

    def pending(self) -> list[int]:
        return [i for i in range(2, self.config.members + 1) if not self.finished(i)]


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
    """How many batches ``ensembles.training._batches`` yields per epoch."""
    n = len(dataset)
    if isinstance(dataset, ArrayDataset):
        return n // batch_size + (1 if n % batch_size > 1 else 0)
    return n // batch_size


def batch_stream(dataset, batch_size: int, *, seed: int, device) -> Iterator:
    """Endless shuffled mini-batches, epoch after epoch, seeded (the same as ``fit`` uses)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from _batches(dataset, batch_size, gen, device)


# ----------------------------------------------------------------------------- weights


def weight_vector(model: nn.Module) -> torch.Tensor:
    """(P,) float64 vector of every floating-point parameter (``landscape.geometry``)."""
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
    of ``BN_BATCH_SIZE`` (``landscape.bn.recompute_bn_``): a sample's BN buffers must match its
    own weights, not member 1's."""
    model = with_weights(base, vector)
    recompute_bn_(model, bn_inputs, batch_size=BN_BATCH_SIZE)
    return model


# ----------------------------------------------------------------------------- state files


def save_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a method's state (SWAG moments, KFAC factors, simplex vertices, a trajectory's
    optimizer state) as safetensors with a JSON document, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={STATE_KEY: json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)


def load_state(path: Path, **expected: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
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


# ----------------------------------------------------------------------------- trajectories


@dataclass(frozen=True)
class Segment:
    """The iterations ``first .. first + steps - 1`` (1-based, counted from member 1) that end
    at the snapshot which becomes member ``index``."""

    index: int
    first: int
    steps: int


class TrajectoryStep(Protocol):
    """Takes one optimisation step at global iteration ``it`` and returns its learning rate."""

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor, it: int) -> float: ...


class Trajectory(Protocol):
    """One continuous run of SGD-like steps (FGE, cSGLD) with resumable state."""

    model: nn.Module

    def state(self) -> dict[str, torch.Tensor]: ...

    def load(self, tensors: dict[str, torch.Tensor]) -> None: ...

    def segment(self, seed: int) -> TrajectoryStep: ...


def run_trajectory(ctx: Context, name: str, segments: list[Segment],
                   make: Callable[[nn.Module], Trajectory], describe: Callable[[Segment], dict]) -> None:
    """Run ``segments`` in order from member 1, writing each snapshot as a member.

    Before a snapshot's member files, the trajectory state (model state and optimizer buffers)
    goes to ``<name>-state-<i>.safetensors``; a rerun continues from the state of the last
    finished member (each segment's batches and noise are seeded by its member's seed, so the
    resumed members are bit-identical to an uninterrupted run).
    """
    done = [s.index for s in segments if ctx.finished(s.index)]
    if len(done) == len(segments):
        return
    last = max([1] + done)
    gaps = [s.index for s in segments if s.index < last and not ctx.finished(s.index)]
    if gaps:  # a snapshot continues from the one before it: the later ones cannot be kept
        raise UserError(f"{ctx.out} lacks member {gaps[0]} but holds member {last}, which "
                        f"continues from it; rerun with --overwrite")
    traj = make(copy.deepcopy(ctx.first.model).to(ctx.device))
    if last > 1:
        found = load_state(ctx.out / f"{name}-state-{last}.safetensors", member=last)
        if found is None:
            raise UserError(f"{ctx.out} lacks {name}-state-{last}.safetensors, the trajectory "
                            f"state after member {last}; rerun with --overwrite")
        traj.load(found[0])
    parent = _sha(ctx, last)
    train_set = ctx.train_set()
    per_epoch = steps_per_epoch(train_set, ctx.config.batch_size)
    todo = [s for s in segments if s.index > last]
    with progress(total=sum(s.steps for s in todo), desc=name, unit="step") as bar:
        for seg in todo:
            step = traj.segment(ctx.seed(seg.index))
            batches = batch_stream(train_set, ctx.config.batch_size, seed=ctx.seed(seg.index),
                                   device=ctx.device)
            traj.model.train()
            lrs = []
            for it in range(seg.first, seg.first + seg.steps):
                lrs.append(step(*next(batches), it))
                bar.update(1)
            save_state(ctx.out / f"{name}-state-{seg.index}.safetensors", traj.state(),
                       {"member": seg.index, "method": name})
            model = copy.deepcopy(traj.model).cpu().eval()
            extra = {"start": f"member:{seg.index - 1}", "iterations": seg.steps,
                     "first_iteration": seg.first, "lr_unit": "iteration", **describe(seg)}
            parent = ctx.write(seg.index, model, parent=parent, epochs=math.ceil(seg.steps / per_epoch),
                               lrs=lrs, lr=max(lrs), extra=extra)
            _remove(ctx.out / f"{name}-state-{seg.index - 1}.safetensors")
    _remove(ctx.out / f"{name}-state-{segments[-1].index}.safetensors")


def optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter tensors (momentum, Adam moments), keyed by parameter name."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for p, state in opt.state.items():
        for key, value in state.items():
            if torch.is_tensor(value):
                out[f"opt/{names[id(p)]}/{key}"] = value
    return out


def load_optimizer_state(model: nn.Module, opt: torch.optim.Optimizer,
                         tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        if key.startswith("opt/"):
            name, _, slot = key[4:].rpartition("/")
            p = params[name]
            opt.state[p][slot] = value.to(p.device) if value.dim() else value


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"model/{k}": v for k, v in model.state_dict().items()}


def load_model_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(state)


def _sha(ctx: Context, index: int) -> str:
    if index == 1:
        return ctx.first.sha256
    from landscape.assets.checkpoint import file_sha256

    return file_sha256(ctx.out / f"member-{index}.safetensors")


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
