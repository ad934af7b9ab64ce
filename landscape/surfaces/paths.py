"""Loss and accuracy along linear paths between checkpoints, barriers and basin labels.

``interpolate([A, B, C, ...], pairs="chain")`` evaluates ``(1 - a) X + a Y`` for every pair
(X, Y) on one alpha grid, all pairs sharing the batched engine; results go to an HDF5 paths file
written point by point and resumed like planes. ``path_report`` turns a ``PathSet`` into
barriers, labels and distances.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.surfaces.barriers import DEFAULT_THRESHOLD_PP, barrier, same_basin
from landscape.engine.bn import bn_modules, resolve_policy
from landscape.assets.checkpoint import Checkpoint, load_checkpoint
from landscape.assets.datasets import DATA_ON, SPLITS
from landscape.grid.distributed import Group
from landscape.engine.evaluator import PATHS
from landscape.errors import UserError
from landscape.engine.layout import ParamLayout
from landscape.assets.models import head_parameter_names
from landscape.engine.numerics import PRECISIONS
from landscape.surfaces.planes import ENGINE_KNOBS, _runtime, _weights_sha256, drop_inert, evaluator_factory, prepare
from landscape.results import PathSet
from landscape.grid.driver import evaluate_grid
from landscape.grid.store import FORMAT_VERSION, PathStore, read_paths

PAIR_MODES = ("chain", "star", "all")
MAX_POINTS = 10001


@dataclass(frozen=True)
class PathConfig:
    """Settings of a set of linear paths (see ``PlaneConfig`` for the shared fields).

    Attributes:
        points: points on [0, 1], both ends included.
        extend: also evaluate beyond the ends, as a fraction of the path (same spacing).
    """

    points: int = 21
    extend: float = 0.0
    bn: str | None = None
    bn_batch_size: int = 128
    splits: tuple[str, ...] = ("train", "test")
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    batch_size: int = 512
    engine: str = "auto"
    group_size: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    workers: int | None = None
    data_on: str = "auto"

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise UserError(message)

        check(self.workers is None or (isinstance(self.workers, int) and self.workers >= 1),
              f"workers must be a positive integer, got {self.workers!r}")
        check(self.data_on in DATA_ON, f"unknown data_on {self.data_on!r}; expected one of {', '.join(DATA_ON)}")
        check(self.precision in PRECISIONS,
              f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        check(isinstance(self.points, int) and 2 <= self.points <= MAX_POINTS,
              f"points must be an integer between 2 and {MAX_POINTS}, got {self.points!r}")
        check(np.isfinite(self.extend) and 0 <= self.extend <= 10,
              f"extend must be between 0 and 10 (a fraction of the path), got {self.extend!r}")
        check(isinstance(self.bn_batch_size, int) and self.bn_batch_size >= 2,
              f"bn_batch_size must be an integer >= 2, got {self.bn_batch_size!r}")
        check(len(self.splits) > 0 and set(self.splits) <= set(SPLITS)
              and len(set(self.splits)) == len(self.splits),
              f"splits must be distinct names from {', '.join(SPLITS)}, got {self.splits!r}")
        check(self.engine in PATHS, f"unknown engine {self.engine!r}; expected one of "
              f"{', '.join(PATHS)}")

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
    checkpoints: Sequence[str | os.PathLike | Checkpoint],
    *,
    out: str | os.PathLike,
    pairs: str | Sequence[str] = "chain",
    config: PathConfig = PathConfig(),
    data: str | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
) -> PathSet:
    """Evaluate linear paths between pairs of checkpoints into the HDF5 file ``out``.

    Args:
        checkpoints: two or more checkpoints (paths or loaded), in order.
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
    ckpts = [c if isinstance(c, Checkpoint) else load_checkpoint(c) for c in checkpoints]
    pair_list = make_pairs(len(ckpts), pairs)
    dataset, layout, vecs = prepare(ckpts, data)
    policy = resolve_policy(config.bn, ckpts[0].model)
    alpha = config.alpha()
    names = _names(ckpts)
    identity = _identity(ckpts, names, dataset, config, policy, pair_list)
    fresh = overwrite or not Path(out).exists()
    evaluate_grid(
        out,
        lambda: PathStore.open(out, alpha=alpha, pairs=pair_list, names=names,
                               splits=config.splits, overwrite=overwrite,
                               config={"identity": identity,
                                       "runtime": _runtime(ckpts, device, config)}),
        evaluator_factory(ckpts, layout, dataset, config, policy, data_root, device),
        lambda pa: _point(vecs, pair_list[pa[0]], float(alpha[pa[1]])),
        _buffers(ckpts, pair_list, alpha, policy),
        engine=config.engine, group_size=config.group_size or 8,
        tune_group=config.group_size is None,
        total=len(pair_list) * len(alpha), desc="paths", fresh=fresh, group=group,
    )
    group.barrier()
    return read_paths(out)


def _names(ckpts: Sequence[Checkpoint]) -> list[str]:
    names: list[str] = []
    for c in ckpts:
        name = c.name
        while name in names:
            name += "_"
        names.append(name)
    return names


def _point(vecs: list[torch.Tensor], pair: tuple[int, int], a: float) -> torch.Tensor:
    """(1 - a) X + a Y, computed from X directly."""
    x, y = vecs[pair[0]], vecs[pair[1]]
    return x + a * (y - x)


def _buffers(ckpts, pair_list, alpha, policy):
    if policy == "recompute":
        return None
    names = [f"{n}.{b}" if n else b for n, _ in bn_modules(ckpts[0].model)
             for b in ("running_mean", "running_var", "num_batches_tracked")]
    states = [{n: c.model.state_dict()[n] for n in names} for c in ckpts]

    def buffers(pa: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, j = pair_list[pa[0]]
        if policy == "keep":
            return states[i]
        a = float(alpha[pa[1]])
        return {n: ((1 - a) * states[i][n].double() + a * states[j][n].double()).float()
                if states[i][n].is_floating_point() else states[i][n] for n in names}

    return buffers


def _identity(ckpts, names, dataset, config: PathConfig, policy, pair_list) -> dict[str, Any]:
    cfg = asdict(config)
    for knob in ENGINE_KNOBS:
        cfg.pop(knob)
    drop_inert(cfg, config, policy, random_plane=False)
    cfg.update(
        splits=list(config.splits), mode="paths", bn=policy, dataset=dataset,
        arch=ckpts[0].meta.arch, pairs=[list(p) for p in pair_list],
        checkpoints=[{"name": n, "sha256": c.sha256 or _weights_sha256(c)}
                     for n, c in zip(names, ckpts)],
        format_version=FORMAT_VERSION,
    )
    return cfg


# ----------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class PairReport:
    """Barriers, the basin label and distances of one pair (accuracies in percent, barriers of
    accuracy in percentage points; NaN where a split was not evaluated or a distance unknown)."""

    a: str
    b: str
    loss_barrier_train: float
    loss_barrier_train_alpha: float
    loss_barrier_test: float
    loss_barrier_test_alpha: float
    acc_barrier_train: float
    acc_barrier_train_alpha: float
    acc_barrier_test: float
    acc_barrier_test_alpha: float
    same_basin: bool
    label: str
    threshold: float
    distance: float
    a_from_pretrained: float
    b_from_pretrained: float


def path_report(
    paths: PathSet,
    checkpoints: Sequence[Checkpoint],
    *,
    threshold: float = DEFAULT_THRESHOLD_PP,
    pretrained: Sequence[Checkpoint] = (),
) -> list[PairReport]:
    """Barriers on train and test, the label from the test accuracy barrier, the L2 distance
    between the endpoints, and each endpoint's distance from its pre-trained checkpoint over the
    backbone (parameters outside the classifier head whose shapes match), found through the
    checkpoints' ``parent`` lineage among ``checkpoints`` and ``pretrained``.

    Raises:
        UserError: the test split was not evaluated (the label needs it).
    """
    if "test" not in paths.metrics:
        raise UserError("the basin label needs the test split; evaluate with --splits train,test")
    layout = ParamLayout.of(checkpoints[0].model)
    vecs = [layout.flatten(c.model.state_dict()) for c in checkpoints]
    from_pre = [_distance_from_pretrained(c, checkpoints, pretrained) for c in checkpoints]
    out = []
    for p, (i, j) in enumerate(paths.pairs):
        b = {f"{kind}_{split}": barrier(paths.alpha, paths.curve(p, split, metric), kind=kind)
             if split in paths.metrics else _NAN
             for kind, metric in (("loss", "loss"), ("acc", "acc")) for split in ("train", "test")}
        acc_test = b["acc_test"].height
        local = same_basin(acc_test, threshold)
        out.append(PairReport(
            a=paths.names[i], b=paths.names[j],
            loss_barrier_train=b["loss_train"].height, loss_barrier_train_alpha=b["loss_train"].alpha,
            loss_barrier_test=b["loss_test"].height, loss_barrier_test_alpha=b["loss_test"].alpha,
            acc_barrier_train=b["acc_train"].height, acc_barrier_train_alpha=b["acc_train"].alpha,
            acc_barrier_test=acc_test, acc_barrier_test_alpha=b["acc_test"].alpha,
            same_basin=local, label="same basin" if local else "different basin",
            threshold=threshold, distance=float(torch.linalg.vector_norm(vecs[i] - vecs[j])),
            a_from_pretrained=from_pre[i], b_from_pretrained=from_pre[j],
        ))
    return out


class _Nan:
    height = float("nan")
    alpha = float("nan")


_NAN = _Nan()


def _distance_from_pretrained(ckpt: Checkpoint, family: Sequence[Checkpoint],
                              pretrained: Sequence[Checkpoint]) -> float:
    root = _lineage_root(ckpt, family, pretrained)
    if root is None:
        return float("nan")
    head = head_parameter_names(ckpt.model)
    mine, theirs = dict(ckpt.model.named_parameters()), dict(root.model.named_parameters())
    sq = 0.0
    for name, p in mine.items():
        q = theirs.get(name)
        if name in head or q is None or q.shape != p.shape:
            continue
        sq += float(((p.detach().double() - q.detach().double()) ** 2).sum())
    return float(np.sqrt(sq))


def _lineage_root(ckpt, family, pretrained):
    """Follow ``parent`` hashes through known checkpoints to a pre-trained one."""
    by_sha = {c.sha256: c for c in (*family, *pretrained) if c.sha256}
    pre_shas = {c.sha256 for c in pretrained}
    seen, current = set(), ckpt
    while current.meta.parent and current.meta.parent not in seen:
        seen.add(current.meta.parent)
        parent = by_sha.get(current.meta.parent)
        if parent is None:
            return None
        if parent.sha256 in pre_shas or parent.meta.method == "pretrain" or not parent.meta.parent:
            return parent
        current = parent
    return None
