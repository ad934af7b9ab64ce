"""Loss and accuracy over a 2-D plane in weight space, written point by point to HDF5.

``plane([A, B, C])`` evaluates the plane through three checkpoints (Garipov et al. 2018);
``plane([A])`` a filter-normalised random plane around one (Li et al. 2018); ``plane(ckpts,
pca=True)`` the plane of their top two principal directions through their mean. Further checkpoints
after C are projected onto the plane. Rerunning on a partial file computes only missing points.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

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
from landscape.grid.settings import GridSettings, check
from landscape.grid.store import SurfaceStore, read_surface
from landscape.results import PointInfo, Surface
from landscape.surfaces.geometry import axis, pca_basis, random_basis, three_point_basis

MAX_GRID = 1001


@dataclass(frozen=True, kw_only=True)
class PlaneConfig(GridSettings):
    """Everything that decides a plane's numbers, plus engine knobs that do not (the fields
    shared with paths are those of ``GridSettings``).

    Attributes:
        grid: points per axis (G x G grid).
        margin: extra room on every side, as a fraction of the checkpoints' span (3-point planes).
        range: half-width of a random plane, in direction units ([-range, range]^2).
        ignore_1d: zero biases and norm parameters in random directions (Li et al.'s default).
    """

    FIELD_ORDER: ClassVar[tuple[str, ...]] = (
        "grid", "margin", "range", "bn", "bn_batch_size", "splits", "train_subset", "test_subset", "seed",
        "ignore_1d", "batch_size", "engine", "group_size", "precision", "channels_last", "workers", "data_on")

    grid: int = 21
    margin: float = 0.2
    range: float = 1.0
    ignore_1d: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.grid, int) and 2 <= self.grid <= MAX_GRID,
              f"grid must be an integer between 2 and {MAX_GRID}, got {self.grid!r}")
        check(np.isfinite(self.margin) and 0 <= self.margin <= 10,
              f"margin must be between 0 and 10 (a fraction of the span), got {self.margin!r}")
        check(np.isfinite(self.range) and self.range > 0, f"range must be a positive number, got {self.range!r}")


def plane(
    checkpoints: Sequence[CheckpointLike] | Mapping[str, CheckpointLike],
    *,
    out: str | os.PathLike,
    config: PlaneConfig = PlaneConfig(),
    data: str | Data | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
    pca: bool = False,
) -> Surface:
    """Compute (or finish) a loss surface and write it to the HDF5 file ``out``.

    Args:
        checkpoints: [A] for a random plane around A; [A, B, C, *more] for the plane through
            A, B, C with further checkpoints projected onto it. Paths, ``Checkpoint``s or
            ``nn.Module``s of one architecture (a mapping names them; ``landscape.as_checkpoint``).
        out: the surface file (``.h5``). An existing file with the same configuration is resumed.
        config: grid, BN policy, splits and engine settings.
        data: a dataset name, ``path/to/file.py:factory`` or ``landscape.Data`` (your own splits:
            Datasets, (X, y) tensors or DataLoaders); default: the one recorded in the checkpoints.
        data_root: where the dataset lives (CIFAR, caches).
        device: where evaluation runs.
        overwrite: replace an existing file computed with another configuration.
        group: under torchrun, this process's place (``landscape.grid.distributed.init_from_env()``);
            the points are shared dynamically among the processes.
        pca: the plane through the checkpoints' mean along the top two principal directions of
            their weights (Li et al.'s trajectory plane; three or more checkpoints, every one
            projected with its residual); the fraction of the variance each axis explains is in
            ``surface.config["pca"]``.

    Returns:
        The finished ``Surface`` (read back from ``out``).

    Raises:
        UserError: incompatible or collinear checkpoints, unknown dataset, bad configuration,
            or an existing file with a different configuration.

    Example:
        >>> s = plane(["a.safetensors", "b.safetensors", "c.safetensors"], out="plane.h5")
        >>> s.loss("test").shape
        (21, 21)
    """
    ckpts = as_checkpoints(checkpoints)
    if len(ckpts) == 2:
        raise UserError("a plane needs one checkpoint (random plane) or three or more; "
                        "for two use `landscape interp A B`")
    if not ckpts:
        raise UserError("a plane needs at least one checkpoint")
    dataset, layout, vecs = prepare(ckpts, data)
    policy = resolve_policy(config.bn, ckpts[0].model)
    basis, x, y, points, explained = _geometry(ckpts, vecs, layout, config, pca)
    if policy == "interpolate" and basis.mode != "three_point":
        raise UserError("--bn interpolate needs a plane through three checkpoints; use recompute or keep")
    identity = _identity(ckpts, dataset, config, policy, basis.mode)
    config_doc = {"identity": identity.to_dict(), "runtime": runtime(ckpts, device, config)}
    if explained is not None:
        config_doc["pca"] = {"explained_variance_ratio": list(explained)}
    corners = range(min(3, len(ckpts)))  # interpolate (three-point planes only) combines A, B and C
    bufs = point_buffers(ckpts[:3], policy, lambda ji: corners,
                         lambda ji: basis.coefficients(float(x[ji[1]]), float(y[ji[0]])))
    job = GridJob(
        open_store=lambda: SurfaceStore.open(out, x=x, y=y, splits=config.splits, points=points,
                                             config=config_doc, overwrite=overwrite),
        make_evaluator=evaluator_factory(ckpts, layout, dataset, config, policy, data_root, torch.device(device)),
        weights=lambda ji: basis.point(float(x[ji[1]]), float(y[ji[0]])),
        buffers=bufs,
        total=len(x) * len(y), desc="plane")
    evaluate_grid(out, job, config, overwrite=overwrite, group=group)
    return read_surface(out)


def _geometry(ckpts, vecs, layout, config: PlaneConfig, pca: bool):
    g = config.grid
    explained = None
    if pca:
        basis, explained = pca_basis(vecs)
        xy = [basis.project(v)[:2] for v in vecs]
        x = axis(min(p[0] for p in xy), max(p[0] for p in xy), config.margin, g)
        y = axis(min(p[1] for p in xy), max(p[1] for p in xy), config.margin, g)
    elif len(ckpts) == 1:
        params = dict(ckpts[0].model.named_parameters())
        basis = random_basis(params, layout, seed=config.seed, ignore_1d=config.ignore_1d)
        x = y = np.linspace(-config.range, config.range, g)
    else:
        basis = three_point_basis(*vecs[:3])
        xs = [0.0, basis.norm_b, basis.c_u]
        x = axis(min(xs), max(xs), config.margin, g)
        y = axis(0.0, basis.norm_c_perp, config.margin, g)
    points = {name: PointInfo(*basis.project(v)) for name, v in zip(display_names(ckpts), vecs)}
    return basis, x, y, points, explained


def _identity(ckpts, dataset, config: PlaneConfig, policy: str, mode: str) -> Identity:
    cfg = config.identity_fields(policy, random_plane=mode == "random")
    for inert in (("margin",) if mode == "random" else ("range", "ignore_1d")):
        cfg.pop(inert)
    return Identity(cfg, mode, policy, data_name(dataset), ckpts[0].meta.arch,
                    tuple(CheckpointRef.of(c, n) for c, n in zip(ckpts, display_names(ckpts))),
                    data=data_identity(dataset, config, policy), image=image_identity(dataset, config, ckpts))
