"""The trajectory runner of FGE and cSGLD: one continuous run of SGD-like steps from member 1,
a snapshot at the end of every segment becoming a member, resumable after any member."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ensembles.methods.common import Context, batch_stream, load_state, save_state, steps_per_epoch
from landscape.assets.checkpoint import file_sha256
from landscape.errors import UserError
from landscape.progress import progress


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
    run_dir = ctx.run_dir
    done = [s.index for s in segments if run_dir.finished(s.index)]
    if len(done) == len(segments):
        return
    last = max([1] + done)
    gaps = [s.index for s in segments if s.index < last and not run_dir.finished(s.index)]
    if gaps:  # a snapshot continues from the one before it: the later ones cannot be kept
        raise UserError(f"{run_dir.path} lacks member {gaps[0]} but holds member {last}, which "
                        f"continues from it; rerun with --overwrite")
    traj = make(copy.deepcopy(ctx.first.model).to(ctx.device))
    if last > 1:
        state = run_dir.state_path(name, last)
        found = load_state(state, member=last)
        if found is None:
            raise UserError(f"{run_dir.path} lacks {state.name}, the trajectory "
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
            save_state(run_dir.state_path(name, seg.index), traj.state(),
                       {"member": seg.index, "method": name})
            model = copy.deepcopy(traj.model).cpu().eval()
            extra = {"start": f"member:{seg.index - 1}", "iterations": seg.steps,
                     "first_iteration": seg.first, "lr_unit": "iteration", **describe(seg)}
            parent = ctx.write(seg.index, model, parent=parent, epochs=math.ceil(seg.steps / per_epoch),
                               lrs=lrs, lr=max(lrs), extra=extra)
            run_dir.state_path(name, seg.index - 1).unlink(missing_ok=True)
    run_dir.state_path(name, segments[-1].index).unlink(missing_ok=True)


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
    return ctx.first.sha256 if index == 1 else file_sha256(ctx.run_dir.checkpoint_path(index))
