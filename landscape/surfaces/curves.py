"""Curves between two checkpoints: the ``Curve`` type, its evaluation on the batched engine, how
it compares with the straight line (mode connectivity, Garipov et al. 2018), and its projection
onto a plane. A curve's points are evaluated like a linear path (``evaluate_curve`` writes a
paths file with one pair, A to B, over the t grid). Curve files: ``landscape.surfaces.curve_files``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.assets.checkpoint import Checkpoint, CheckpointMeta
from landscape.assets.modules import CheckpointLike, as_checkpoint
from landscape.assets.userdata import Data
from landscape.engine.bn import point_buffers, resolve_policy
from landscape.errors import UserError
from landscape.grid.distributed import Group
from landscape.grid.driver import GridJob, evaluate_grid
from landscape.grid.identity import CheckpointRef, Identity
from landscape.grid.prepare import data_identity, data_name, evaluator_factory, image_identity, prepare, runtime
from landscape.grid.store import PathStore, read_paths
from landscape.results import PathSet
from landscape.surfaces.barriers import DEFAULT_THRESHOLD_PP, barrier
from landscape.surfaces.curve_shape import check_shape, coefficients, initial_positions
from landscape.surfaces.paths import PathConfig

@dataclass(frozen=True)
class Curve:
    """A curve from ``endpoints[0]`` to ``endpoints[1]`` through its ``bends`` (models of the
    endpoints' architecture).

    Attributes:
        kind: ``bezier`` or ``polychain`` (``landscape.surfaces.curve_shape``).
        endpoints: the two fixed checkpoints.
        bends: one model per bend, as checkpoints (their ``meta.method`` is ``curve-bend``).
        record: how the bends were trained (epochs, lr, seed, dataset, ...).
        path: the curve file it was read from, if any.
    """

    kind: str
    endpoints: tuple[Checkpoint, Checkpoint]
    bends: tuple[Checkpoint, ...]
    record: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def controls(self) -> list[Checkpoint]:
        """A, the bends, B: the control points in order."""
        return [self.endpoints[0], *self.bends, self.endpoints[1]]

    def weights(self, t: float) -> dict[str, torch.Tensor]:
        """The state dict of the curve's point at ``t`` (floating tensors combined in float64;
        integer buffers are A's)."""
        coef = coefficients(self.kind, len(self.bends), t)
        states = [c.model.state_dict() for c in self.controls()]
        return {k: (sum(float(c) * s[k].double() for c, s in zip(coef, states)).to(v.dtype)
                    if v.is_floating_point() else v) for k, v in states[0].items()}


def straight_bends(a: CheckpointLike, b: CheckpointLike, bends: int) -> list[torch.nn.Module]:
    """Bend models on the segment A -> B (bend i at i / (bends + 1) of the way): where every
    curve starts, and where it is the straight line."""
    a, b = as_checkpoint(a), as_checkpoint(b)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    out = []
    for f in initial_positions(bends):
        model = copy.deepcopy(a.model)
        model.load_state_dict({k: ((1 - f) * v.double() + f * sb[k].double()).to(v.dtype)
                               if v.is_floating_point() else v for k, v in sa.items()})
        out.append(model)
    return out


def make_curve(kind: str, a: CheckpointLike, b: CheckpointLike, bend_models: Sequence[torch.nn.Module],
               record: Mapping[str, Any] | None = None) -> Curve:
    """A ``Curve`` from its endpoints and bend models (checked to fit the endpoints)."""
    check_shape(kind, len(bend_models))
    a, b = as_checkpoint(a), as_checkpoint(b)
    keys = {k: v.shape for k, v in a.model.state_dict().items()}
    for i, m in enumerate(bend_models, 1):
        if {k: v.shape for k, v in m.state_dict().items()} != keys:
            raise UserError(f"bend {i} does not have the endpoints' tensors; a bend is a model of their architecture")
    meta = CheckpointMeta(a.meta.arch, a.meta.num_classes, dict(a.meta.arch_kwargs), a.meta.dataset,
                          method="curve-bend", parent=a.sha256)
    bends = tuple(Checkpoint(m.eval(), meta) for m in bend_models)
    return Curve(kind, (a, b), bends, dict(record or {}))


def evaluate_curve(
    curve: Curve,
    *,
    out: str | os.PathLike,
    config: PathConfig = PathConfig(),
    data: str | Data | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
) -> PathSet:
    """Evaluate the curve at ``config.points`` values of t in [0, 1] into the paths file ``out``
    (one pair, A to B, its ``alpha`` being t), on the batched engine with the BN policy of
    ``config`` (recompute at every point by default); resumed like paths, shared under torchrun.

    Example:
        >>> ps = evaluate_curve(load_curve("runs/curve/curve.safetensors"), out="runs/curve/curve.h5")
        >>> barrier(ps.alpha, ps.curve(0, "test", "acc"), kind="acc").height
    """
    if not isinstance(curve, Curve):
        raise UserError("evaluate_curve takes a Curve; read a curve file with landscape.load_curve(path)")
    if config.extend:
        raise UserError("a curve is defined on t in [0, 1] only; evaluate it without --extend")
    ckpts = curve.controls()
    dataset, layout, vecs = prepare(ckpts, data)
    policy = resolve_policy(config.bn, ckpts[0].model)
    t = config.alpha()
    n = len(ckpts) - 1
    names = [c.name for c in curve.endpoints]
    names = names if names[0] != names[1] else [names[0], names[1] + "_"]
    refs = [CheckpointRef.of(c, name) for c, name in zip(ckpts, [names[0], *(f"bend-{i}" for i in range(1, n)), names[1]])]
    settings = {**config.identity_fields(policy), "curve_kind": curve.kind, "bends": len(curve.bends)}
    identity = Identity(settings, "curve", policy, data_name(dataset), ckpts[0].meta.arch, tuple(refs), ((0, n),),
                        data=data_identity(dataset, config, policy), image=image_identity(dataset, config, ckpts))
    coef = [coefficients(curve.kind, len(curve.bends), float(v)) for v in t]
    job = GridJob(
        open_store=lambda: PathStore.open(out, alpha=t, pairs=[(0, 1)], names=names, splits=config.splits,
                                          overwrite=overwrite, config={"identity": identity.to_dict(),
                                                                       "runtime": runtime(ckpts, device, config)}),
        make_evaluator=evaluator_factory(ckpts, layout, dataset, config, policy, data_root, device),
        weights=lambda pa: sum(float(c) * v for c, v in zip(coef[pa[1]], vecs)),
        buffers=point_buffers(ckpts, policy, lambda pa: range(len(ckpts)), lambda pa: coef[pa[1]]),
        total=len(t), desc="curve")
    evaluate_grid(out, job, config, overwrite=overwrite, group=group)
    return read_paths(out)


@dataclass(frozen=True)
class CurveReport:
    """The curve's barriers beside the straight line's (accuracy barriers in percentage points;
    NaN where a split was not evaluated), and what they say.

    ``label``: ``connected by a curve`` (the curve's test accuracy barrier under ``threshold``,
    the line's over it), ``connected by the line`` (the line's under it already) or
    ``not connected`` (both over it); without accuracy, from the loss barriers relative to the
    endpoints' mean test loss; ``no verdict`` when a barrier is undefined (NaN).
    """

    a: str
    b: str
    kind: str
    bends: int
    line: dict[str, float]
    curve: dict[str, float]
    label: str
    threshold: float


def curve_report(curve_paths: PathSet, line_paths: PathSet, *, kind: str = "", bends: int = 0,
                 threshold: float = DEFAULT_THRESHOLD_PP, loss_threshold: float = 0.1) -> CurveReport:
    """Compare the curve's paths file with the straight line's (its first pair)."""
    def barriers(ps: PathSet) -> dict[str, float]:
        out = {}
        for split in ps.splits:
            for metric in ("loss", "acc"):
                if metric in ps.metrics[split]:
                    out[f"{metric}_barrier_{split}"] = barrier(ps.alpha, ps.curve(0, split, metric), kind=metric).height
        return out

    if "test" not in line_paths.splits or "test" not in curve_paths.splits:
        raise UserError("the connectivity label needs the test split; evaluate with --splits train,test")
    line, bent = barriers(line_paths), barriers(curve_paths)
    if "acc_barrier_test" in line and "acc_barrier_test" in bent:
        heights, used = (line["acc_barrier_test"], bent["acc_barrier_test"]), threshold
    else:
        scale = float(np.mean([line_paths.curve(0, "test", "loss")[i] for i in _ends(line_paths)]))
        heights, used = (line["loss_barrier_test"] / scale, bent["loss_barrier_test"] / scale), loss_threshold
    if not all(np.isfinite(heights)):
        label = "no verdict (a barrier is undefined: a diverged point or endpoint)"
    else:
        over_line, over_curve = (h >= used for h in heights)
        label = "connected by the line" if not over_line else "connected by a curve" if not over_curve else "not connected"
    names = line_paths.names
    return CurveReport(names[0], names[-1], kind, bends, line, bent, label, used)


def _ends(ps: PathSet) -> list[int]:
    return [int(np.flatnonzero(np.isclose(ps.alpha, a, atol=1e-12))[0]) for a in (0.0, 1.0)]


def project_curve(curve: Curve, plane_checkpoints: Sequence[CheckpointLike], points: int = 101
                  ) -> tuple[np.ndarray, float]:
    """The curve's points at ``points`` values of t, in the coordinates of the plane through
    the first three ``plane_checkpoints`` (as ``landscape.plane`` builds it), and the largest
    distance of a point from that plane (zero, up to rounding, for one bend through A, the bend
    and B)."""
    from landscape.engine.layout import ParamLayout
    from landscape.surfaces.geometry import three_point_basis

    ckpts = [as_checkpoint(c) for c in plane_checkpoints]
    if len(ckpts) < 3:
        raise UserError("a curve is drawn onto a plane through three checkpoints")
    layout = ParamLayout.of(ckpts[0].model)
    basis = three_point_basis(*(layout.flatten(c.model.state_dict()) for c in ckpts[:3]))
    xy, residual = [], 0.0
    for t in np.linspace(0.0, 1.0, points):
        x, y, r = basis.project(layout.flatten(curve.weights(float(t))))
        xy.append((x, y))
        residual = max(residual, r)
    return np.asarray(xy), residual
