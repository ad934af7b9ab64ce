"""Loss and accuracy over the triangle of convex combinations ``a A + b B + c C`` of three
checkpoints (the simplex view of the paper authors' ``get_simplex_grid``), on the batched engine.

The file is a surface file (mode ``simplex``) over barycentric coordinates: ``x`` is b and ``y``
is c on ``grid`` points from 0 to 1 each, so a point (j, i) is ``(1 - x_i - y_j) A + x_i B + y_j C``;
points outside the triangle (``x_i + y_j > 1``) are marked done at creation and stay NaN. It is
written and resumed like a plane, and shared under torchrun.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from landscape.assets.modules import CheckpointLike, as_checkpoints
from landscape.assets.userdata import Data
from landscape.engine.bn import point_buffers, resolve_policy
from landscape.errors import UserError
from landscape.grid.distributed import Group
from landscape.grid.driver import GridJob, evaluate_grid
from landscape.grid.identity import CheckpointRef, Identity, display_names
from landscape.grid.prepare import data_identity, data_name, evaluator_factory, image_identity, prepare, runtime
from landscape.grid.store import SurfaceStore, read_surface
from landscape.results import PointInfo, Surface
from landscape.surfaces.planes import PlaneConfig

EPS = 1e-9


def barycentric_grid(grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The axes (b and c) and the (grid, grid) mask of points inside the triangle (b + c <= 1)."""
    axis = np.linspace(0.0, 1.0, grid)
    inside = axis[None, :] + axis[:, None] <= 1.0 + EPS
    return axis, inside


def simplex(
    checkpoints: Sequence[CheckpointLike] | Mapping[str, CheckpointLike],
    *,
    out: str | os.PathLike,
    config: PlaneConfig = PlaneConfig(),
    data: str | Data | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
) -> Surface:
    """Evaluate the triangle of convex combinations of three checkpoints (``config.grid``
    points per edge, the BN policy of ``config``) into the surface file ``out``.

    Example:
        >>> s = simplex(["a.safetensors", "b.safetensors", "c.safetensors"], out="simplex.h5")
        >>> simplex_extremes(s, "test", "acc")["lowest"]
    """
    ckpts = as_checkpoints(checkpoints)
    if len(ckpts) != 3:
        raise UserError(f"a simplex is the triangle of three checkpoints, got {len(ckpts)}")
    dataset, layout, vecs = prepare(ckpts, data)
    policy = resolve_policy(config.bn, ckpts[0].model)
    axis, inside = barycentric_grid(config.grid)
    names = display_names(ckpts)
    corners = {names[0]: PointInfo(0.0, 0.0, 0.0), names[1]: PointInfo(1.0, 0.0, 0.0), names[2]: PointInfo(0.0, 1.0, 0.0)}
    settings = config.identity_fields(policy)
    for inert in ("margin", "range", "ignore_1d"):
        settings.pop(inert, None)
    identity = Identity(settings, "simplex", policy, data_name(dataset), ckpts[0].meta.arch,
                        tuple(CheckpointRef.of(c, n) for c, n in zip(ckpts, names)),
                        data=data_identity(dataset, config, policy), image=image_identity(dataset, config, ckpts))
    doc = {"identity": identity.to_dict(), "runtime": runtime(ckpts, device, config)}

    job = GridJob(open_store=lambda: SurfaceStore.open(out, x=axis, y=axis, splits=config.splits, points=corners,
                                                       config=doc, overwrite=overwrite, skip=~inside),
                  make_evaluator=evaluator_factory(ckpts, layout, dataset, config, policy, data_root,
                                                                    torch.device(device)),
                  weights=lambda ji: _point(vecs, axis[ji[1]], axis[ji[0]]),
                  buffers=point_buffers(ckpts, policy, lambda ji: (0, 1, 2),
                                        lambda ji: coefficients(float(axis[ji[1]]), float(axis[ji[0]]))),
                  total=int(inside.sum()), desc="simplex")
    evaluate_grid(out, job, config, overwrite=overwrite, group=group)
    return read_surface(out)


def coefficients(b: float, c: float) -> tuple[float, float, float]:
    """(a, b, c) of the point with barycentric coordinates b and c."""
    return 1.0 - b - c, b, c


def _point(vecs, b: float, c: float) -> torch.Tensor:
    a, b, c = coefficients(float(b), float(c))
    return a * vecs[0] + b * vecs[1] + c * vecs[2]


@dataclass(frozen=True)
class Extreme:
    """A value inside the triangle and where: its barycentric coefficients (a, b, c)."""

    value: float
    a: float
    b: float
    c: float


def simplex_extremes(surface: Surface, split: str = "test", metric: str = "loss") -> dict[str, Extreme]:
    """The lowest and the highest ``metric`` (``loss`` or ``acc``) inside the triangle."""
    values = surface.loss(split) if metric == "loss" else surface.acc(split)
    _, inside = barycentric_grid(len(surface.x))
    masked = np.where(inside & np.isfinite(values), values, np.nan)
    if np.isnan(masked).all():
        raise UserError(f"the simplex has no finite {split} {metric} inside the triangle yet")
    out = {}
    for key, pick in (("lowest", np.nanargmin), ("highest", np.nanargmax)):
        j, i = np.unravel_index(pick(masked), masked.shape)
        out[key] = Extreme(float(masked[j, i]), *coefficients(float(surface.x[i]), float(surface.y[j])))
    return out
