"""Loss and accuracy along linear paths between checkpoints.

``interpolate([A, B, C, ...], pairs="chain")`` evaluates ``(1 - a) X + a Y`` for every pair
(X, Y) on one alpha grid, all pairs sharing the batched engine; results go to an HDF5 paths file
written point by point and resumed like planes. ``landscape.surfaces.basins.path_report`` turns
the ``PathSet`` into barriers, labels and distances.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
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
from landscape.grid.store import PathStore, read_paths
from landscape.results import PathSet

PAIR_MODES = ("chain", "star", "all")
MAX_POINTS = 10001


@dataclass(frozen=True, kw_only=True)
class PathConfig(GridSettings):
    """Settings of a set of linear paths (the fields shared with planes are those of
    ``GridSettings``).

    Attributes:
        points: points on [0, 1], both ends included.
        extend: also evaluate beyond the ends, as a fraction of the path (same spacing).
    """

    FIELD_ORDER: ClassVar[tuple[str, ...]] = (
        "points", "extend", "bn", "bn_batch_size", "splits", "train_subset", "test_subset", "seed",
        "batch_size", "engine", "group_size", "precision", "channels_last", "workers", "data_on")

    points: int = 21
    extend: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.points, int) and 2 <= self.points <= MAX_POINTS,
              f"points must be an integer between 2 and {MAX_POINTS}, got {self.points!r}")
        check(np.isfinite(self.extend) and 0 <= self.extend <= 10,
              f"extend must be between 0 and 10 (a fraction of the path), got {self.extend!r}")

    def alpha(self) -> np.ndarray:
        """The alpha grid: k / (points - 1), with whole steps beyond [0, 1] when extended."""
        ext = int(round(self.extend * (self.points - 1)))
        return np.arange(-ext, self.points + ext) / (self.points - 1)


def make_pairs(n: int, modes: str | Sequence[str]) -> list[tuple[int, int]]:
    """Pairs of checkpoint indices: ``chain`` (consecutive), ``star`` (the first against every
    other), ``all`` (every pair); several modes are joined without repeats, in order.

    Raises:
        UserError: an unknown mode or fewer than two checkpoints.
    """
    if n < 2:
        raise UserError("a path needs at least two checkpoints")
    modes = [m.strip() for m in modes.split(",")] if isinstance(modes, str) else list(modes)
    pairs: list[tuple[int, int]] = []
    for mode in modes:
        if mode == "chain":
            new = [(i, i + 1) for i in range(n - 1)]
        elif mode == "star":
            new = [(0, j) for j in range(1, n)]
        elif mode == "all":
            new = list(combinations(range(n), 2))
        else:
            raise UserError(f"unknown pairs {mode!r}; expected one of {', '.join(PAIR_MODES)}")
        pairs += [p for p in new if p not in pairs]
    return pairs


def interpolate(
    checkpoints: Sequence[CheckpointLike] | Mapping[str, CheckpointLike],
    *,
    out: str | os.PathLike,
    pairs: str | Sequence[str] = "chain",
    config: PathConfig = PathConfig(),
    data: str | Data | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
) -> PathSet:
    """Evaluate linear paths between pairs of checkpoints into the HDF5 file ``out``.

    Args:
        checkpoints: two or more checkpoints (paths, ``Checkpoint``s or ``nn.Module``s of one
            architecture; a mapping names them), in order.
        out: the paths file (``.h5``); an existing one with the same configuration is resumed.
        pairs: ``chain``, ``star``, ``all`` or a comma-joined combination.
        config: alpha grid, BN policy, splits and engine settings.
        data, data_root, device, overwrite, group: as for ``landscape.plane``.

    Returns:
        The finished ``PathSet``, read back from ``out``.

    Example:
        >>> ps = interpolate(["m1.safetensors", "m2.safetensors"], out="paths.h5")
        >>> barrier(ps.alpha, ps.curve(0, "test", "acc"), kind="acc").height
    """
    ckpts = as_checkpoints(checkpoints)
    pair_list = make_pairs(len(ckpts), pairs)
    dataset, layout, vecs = prepare(ckpts, data)
    policy = resolve_policy(config.bn, ckpts[0].model)
    alpha = config.alpha()
    names = display_names(ckpts)
    identity = Identity(config.identity_fields(policy), "paths", policy, data_name(dataset), ckpts[0].meta.arch,
                        tuple(CheckpointRef.of(c, n) for c, n in zip(ckpts, names)), tuple(pair_list),
                        data=data_identity(dataset, config, policy), image=image_identity(dataset, config, ckpts))
    config_doc = {"identity": identity.to_dict(), "runtime": runtime(ckpts, device, config)}
    job = GridJob(
        open_store=lambda: PathStore.open(out, alpha=alpha, pairs=pair_list, names=names, splits=config.splits,
                                          overwrite=overwrite, config=config_doc),
        make_evaluator=evaluator_factory(ckpts, layout, dataset, config, policy, data_root, device),
        weights=lambda pa: _point(vecs, pair_list[pa[0]], float(alpha[pa[1]])),
        buffers=point_buffers(ckpts, policy, lambda pa: pair_list[pa[0]],
                              lambda pa: (1 - float(alpha[pa[1]]), float(alpha[pa[1]]))),
        total=len(pair_list) * len(alpha), desc="paths")
    evaluate_grid(out, job, config, overwrite=overwrite, group=group)
    return read_paths(out)


def _point(vecs: list[torch.Tensor], pair: tuple[int, int], a: float) -> torch.Tensor:
    """(1 - a) X + a Y, computed from X directly."""
    x, y = vecs[pair[0]], vecs[pair[1]]
    return x + a * (y - x)

