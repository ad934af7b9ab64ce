"""Fitting a curve of low loss between two checkpoints (``landscape curve``; Garipov et al. 2018):
the bends start on the straight segment and are trained, the endpoints fixed, by drawing
``t ~ U(0, 1)`` for every batch and minimising the training loss at the curve's point at t.

Any model: a point's weights are the control points' weights combined with the curve's
coefficients at t, and ``torch.func.functional_call`` runs the endpoints' own model at them
(BatchNorm in train mode on every batch). SGD with momentum (or AdamW) on the bends only, with
weight decay on them, and the per-epoch cosine of ``finetune``. After every epoch the state
(bends, optimizer, the two random generators, BN buffers) is written atomically beside the
curve, so a killed fit resumes where it stopped and ends with bends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import copy
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ensembles.inputs import check_fits, training_transform
from ensembles.schedules import cosine_lr
from ensembles.training import TrainConfig, make_optimizer, shuffled_batches
from landscape.assets.datasets import dataset_info, load_dataset
from landscape.assets.images import ImageTransform
from landscape.assets.modules import CheckpointLike, as_checkpoint, save_checkpoint
from landscape.assets.resolve import dataset_name
from landscape.assets.userdata import Data
from landscape.atomic import write_bytes
from landscape.errors import UserError
from landscape.grid.identity import CheckpointRef
from landscape.grid.prepare import check_compatible
from landscape.grid.objectives import check_loss, loss_name, per_sample_loss
from landscape.progress import progress
from landscape.surfaces.curve_shape import check_shape, torch_coefficients
from landscape.surfaces.curve_files import load_curve, save_curve
from landscape.surfaces.curves import Curve, make_curve, straight_bends

CURVE_FILE, STATE_FILE = "curve.safetensors", "curve-state.pt"


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve and the mean training loss of every epoch."""

    curve: Curve
    losses: tuple[float, ...]
    path: Path


class CurveModule(nn.Module):
    """The curve as a module: ``forward(x)`` runs the endpoints' model at the curve's point at
    ``self.t``; the bends are its only parameters (one (bends, *shape) tensor per weight)."""

    def __init__(self, kind: str, a: nn.Module, b: nn.Module, bends: list[nn.Module]) -> None:
        super().__init__()
        check_shape(kind, len(bends))
        self.kind, self.count, self.t = kind, len(bends), 0.0
        self.base = copy.deepcopy(a)
        self.names = [n for n, _ in a.named_parameters()]
        pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
        for i, n in enumerate(self.names):
            self.register_buffer(f"end_a_{i}", pa[n].detach().clone(), persistent=False)
            self.register_buffer(f"end_b_{i}", pb[n].detach().clone(), persistent=False)
        self.bends = nn.ParameterList(
            nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach().clone() for m in bends]))
            for n in self.names)
        for p in self.base.parameters():
            p.requires_grad_(False)

    def point(self) -> dict[str, torch.Tensor]:
        """The curve's weights at ``self.t``, differentiable in the bends."""
        c = torch_coefficients(self.kind, self.count, self.t, dtype=self.bends[0].dtype).to(self.bends[0].device)
        out = {}
        for i, n in enumerate(self.names):
            bend = self.bends[i]
            inner = (c[1:-1].view(-1, *([1] * (bend.dim() - 1))) * bend).sum(0)
            out[n] = c[0] * getattr(self, f"end_a_{i}") + inner + c[-1] * getattr(self, f"end_b_{i}")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, self.point(), (x,))

    def bend_models(self, template: list[nn.Module]) -> list[nn.Module]:
        """The bends as models: ``template``'s (their BN buffers) with the trained weights."""
        out = []
        for k, model in enumerate(template):
            model = copy.deepcopy(model)
            params = dict(model.named_parameters())
            with torch.no_grad():
                for i, n in enumerate(self.names):
                    params[n].copy_(self.bends[i][k].detach().to(params[n].device))
            out.append(model.cpu().eval())
        return out


def fit_curve(
    a: CheckpointLike,
    b: CheckpointLike,
    out: str | os.PathLike,
    *,
    config: TrainConfig,
    kind: str = "bezier",
    bends: int = 1,
    data: str | Data | None = None,
    data_root: str | None = None,
    loss: Any = "ce",
    device: str | torch.device = "cpu",
    image: ImageTransform | None = None,
    overwrite: bool = False,
) -> CurveFit:
    """Fit a ``kind`` curve with ``bends`` bends from ``a`` to ``b`` into the folder ``out``
    (``curve.safetensors``; ``bend-<i>.safetensors``, each bend as a checkpoint, for planes through
    A, a bend and B; ``curve-state.pt``, the state after the last epoch); a finished fit with the
    same settings is read back, an interrupted one resumed.

    Args:
        config: the recipe (epochs, lr, wd, momentum, batch size, seed, optimizer, warmup,
            grad_clip; label smoothing, mixup, cutmix and AMP are refused).
        data: the training data (a name, ``path/to/file.py:factory`` or ``landscape.Data``);
            default: the dataset the endpoints record.
        loss: ``ce``, ``mse`` or a per-sample loss (a callable or an import path), as ``--loss``.
        overwrite: replace a fit of other settings in ``out``.

    Example:
        >>> fit = fit_curve("m1.safetensors", "m2.safetensors", "runs/curve",
        ...                 config=TrainConfig(epochs=20, lr=0.05, seed=0))
        >>> fit.curve.weights(0.5)
    """
    check_shape(kind, bends)
    check_loss(loss)
    if config.mixup or config.cutmix or config.label_smoothing or config.amp:
        raise UserError("a curve is fitted with the plain recipe: no mixup, cutmix, label smoothing or AMP")
    a, b = as_checkpoint(a), as_checkpoint(b)
    check_compatible([a, b])  # one architecture, head and tensor shapes, before anything is trained
    data = dataset_name(data if data is not None else a.meta.dataset)
    out = Path(out)
    settings = _settings(a, b, kind, bends, data, loss, config)
    done = None if overwrite else _finished(out, settings, a, b)
    if done is not None:
        return done
    transform = training_transform(a, data, image)
    train_set = load_dataset(data, "train", data_root, train_transform=True, image=transform)
    check_fits(a.model, train_set, data, device)
    if a.meta.num_classes != dataset_info(data).num_classes:
        raise UserError(f"the endpoints have {a.meta.num_classes} classes but {data} has "
                        f"{dataset_info(data).num_classes}; fit a curve on the data they were trained on")
    template = straight_bends(a, b, bends)
    module = CurveModule(kind, a.model, b.model, template).to(device)
    trainer = _Trainer(module, config, per_sample_loss(loss))
    state = out / STATE_FILE
    start, losses = trainer.resume(state, settings) if state.exists() and not overwrite else (0, [])
    out.mkdir(parents=True, exist_ok=True)
    with progress(total=config.epochs, initial=start, desc=f"curve {kind}", unit="epoch") as bar, \
            torch.random.fork_rng(devices=[]):  # augmentations and dropout draw from it: seeded, saved, restored
        trainer.seed_global(state if start else None)
        for epoch in range(start + 1, config.epochs + 1):
            losses.append(trainer.epoch(epoch, shuffled_batches(train_set, config.batch_size, trainer.gen, device)))
            trainer.save(state, settings, epoch, losses)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update(1)
    record = {**settings, "train_loss": losses}
    curve = make_curve(kind, a, b, module.bend_models(template), record)
    _bend_files(curve, out)  # before the curve file, whose presence says the fit is finished
    save_curve(curve, out / CURVE_FILE)
    return CurveFit(load_curve(out / CURVE_FILE, endpoints=(a, b)), tuple(losses), out / CURVE_FILE)


def _bend_files(curve: Curve, out: Path) -> None:
    """Each bend as a checkpoint of its own (``bend-<i>.safetensors``), for ``landscape plane A
    BEND B``; skipped for a model whose class cannot be rebuilt from a file (a module object)."""
    for i, bend in enumerate(curve.bends, 1):
        try:
            save_checkpoint(bend.model, out / f"bend-{i}.safetensors", bend.meta)
        except UserError:
            return


def _settings(a, b, kind: str, bends: int, data: str, loss: Any, config: TrainConfig) -> dict[str, Any]:
    """What decides the bends: a fit resumes or is reused only with the same."""
    return {"kind": kind, "bends": bends, "dataset": data, "loss": loss_name(loss),
            "endpoints": [CheckpointRef.of(a).sha256, CheckpointRef.of(b).sha256], **asdict(config)}


def _finished(out: Path, settings: dict[str, Any], a, b) -> CurveFit | None:
    path = out / CURVE_FILE
    if not path.exists():
        return None
    curve = load_curve(path, endpoints=(a, b))
    record = {k: v for k, v in curve.record.items() if k != "train_loss"}
    if record != json.loads(json.dumps(settings)):
        raise UserError(f"{path} holds a curve fitted with other settings; pass --overwrite (overwrite=True) "
                        "or another --out")
    if any(not (out / f"bend-{i}.safetensors").exists() for i in range(1, len(curve.bends) + 1)):
        _bend_files(curve, out)  # a fit killed before its bend files were all written
    return CurveFit(curve, tuple(curve.record.get("train_loss", ())), path)


class _Trainer:
    """One epoch at a time, with the state a resume needs."""

    def __init__(self, module: CurveModule, config: TrainConfig, loss_fn) -> None:
        self.module, self.config, self.loss_fn = module, config, loss_fn
        self.opt = make_optimizer(module, config)
        self.gen = torch.Generator().manual_seed(config.seed)  # the batches
        self.tgen = torch.Generator().manual_seed(config.seed + 1)  # the t of every batch

    def epoch(self, epoch: int, batches) -> float:
        c = self.config
        for group in self.opt.param_groups:
            group["lr"] = cosine_lr(c.lr, epoch, c.epochs, c.warmup_epochs)
        self.module.train()  # BatchNorm in train mode on every batch
        total, n = 0.0, 0
        for xb, yb in batches:
            self.module.t = float(torch.rand((), generator=self.tgen, dtype=torch.float64))
            loss = self.loss_fn(self.module(xb), yb).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.module.parameters(), c.grad_clip)
            self.opt.step()
            total, n = total + float(loss.detach()) * len(yb), n + len(yb)
        if not torch.isfinite(torch.tensor(total)):
            raise UserError(f"the curve's training loss diverged in epoch {epoch}; lower --lr")
        return total / max(n, 1)

    def seed_global(self, state: Path | None) -> None:
        """The global CPU generator (augmentations, dropout): seeded at the start, restored on a resume."""
        torch.manual_seed(self.config.seed + 2)
        if state is not None:
            saved = torch.load(state, map_location="cpu", weights_only=True).get("global")
            if saved is not None:
                torch.set_rng_state(saved)

    def save(self, path: Path, settings: dict[str, Any], epoch: int, losses: list[float]) -> None:
        buf = io.BytesIO()
        torch.save({"settings": json.dumps(settings), "epoch": epoch, "losses": list(losses),
                    "global": torch.get_rng_state(),
                    "bends": [p.detach().cpu() for p in self.module.bends], "opt": self.opt.state_dict(),
                    "gen": self.gen.get_state(), "tgen": self.tgen.get_state(),
                    "buffers": {k: v.cpu() for k, v in self.module.base.named_buffers()}}, buf)
        write_bytes(path, buf.getvalue())

    def resume(self, path: Path, settings: dict[str, Any]) -> tuple[int, list[float]]:
        fix = "pass --overwrite (overwrite=True) to start again"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
            same = json.loads(state["settings"]) == json.loads(json.dumps(settings))
        except Exception as exc:  # noqa: BLE001 - any damage is one line
            raise UserError(f"{path} is not a readable curve training state ({type(exc).__name__}); {fix}") from None
        if not same:
            raise UserError(f"{path} is the state of a curve fitted with other settings; {fix}, or use another --out")
        with torch.no_grad():
            for p, saved in zip(self.module.bends, state["bends"]):
                p.copy_(saved.to(p.device))
            own = dict(self.module.base.named_buffers())
            for k, v in state["buffers"].items():
                own[k].copy_(v.to(own[k].device))
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.tgen.set_state(state["tgen"])
        return int(state["epoch"]), [float(v) for v in state["losses"]]
