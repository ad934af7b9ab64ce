"""Loss and accuracy over a 2-D plane in weight space, written point by point to HDF5.

``plane([A, B, C])`` evaluates the plane through three checkpoints (Garipov et al. 2018);
``plane([A])`` a filter-normalised random plane around one (Li et al. 2018). Further checkpoints
after C are projected onto the plane. Rerunning on a partial file computes only missing points.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.engine.bn import bn_modules, resolve_policy
from landscape.assets.checkpoint import Checkpoint, load_checkpoint
from landscape.assets.datasets import DATA_ON, SPLITS, as_resident, dataset_info, load_dataset, place, subset_indices
from landscape.grid.distributed import Group
from landscape.engine.evaluator import PATHS, EvalData, GridEvaluator
from landscape.errors import UserError
from landscape.engine.layout import ParamLayout
from landscape.surfaces.geometry import PlaneBasis, axis, random_basis, three_point_basis
from landscape.engine.numerics import PRECISIONS
from landscape.results import PointInfo, Surface
from landscape.grid.driver import evaluate_grid
from landscape.grid.store import FORMAT_VERSION, SurfaceStore, read_surface

MAX_GRID = 1001


@dataclass(frozen=True)
class PlaneConfig:
    """Everything that decides a plane's numbers, plus engine knobs that do not.

    Attributes:
        grid: points per axis (G x G grid).
        margin: extra room on every side, as a fraction of the checkpoints' span (3-point planes).
        range: half-width of a random plane, in direction units ([-range, range]^2).
        bn: BN policy (None: ``recompute`` for BN models, else ``keep``).
        bn_batch_size: fixed batch size for BN statistics.
        splits: which splits to evaluate.
        train_subset, test_subset: evaluate on a seeded random subset of that many samples.
        seed: seeds the subsets and the random plane's directions.
        ignore_1d: zero biases and norm parameters in random directions (Li et al.'s default).
        batch_size: evaluation batch size (engine knob; does not change the numbers).
        engine: ``auto`` (measure), ``loop`` or ``vmap`` (engine knob).
        group_size: points evaluated together (engine knob; None: 8).
        precision: ``fp32``, ``tf32`` or ``bf16`` (``landscape.numerics``; the last two change
            the numbers, so they are part of the file's identity).
        channels_last: channels-last memory format for 4-D tensors (engine knob).
        workers: points evaluated at once by the loop path, each in its own thread (on a GPU
            each on its own CUDA stream) (engine knob; None: measured with ``engine="auto"``,
            else 1).
        data_on: on a GPU, where the evaluation data lives: ``auto``, ``device`` or ``host``
            (copied batch by batch) (engine knob; ``landscape.data.place``).
    """

    grid: int = 21
    margin: float = 0.2
    range: float = 1.0
    bn: str | None = None
    bn_batch_size: int = 128
    splits: tuple[str, ...] = ("train", "test")
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    ignore_1d: bool = True
    batch_size: int = 1024
    engine: str = "auto"
    group_size: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    workers: int | None = None
    data_on: str = "auto"

    def __post_init__(self) -> None:
        _check(self.workers is None or (isinstance(self.workers, int) and self.workers >= 1),
               f"workers must be a positive integer, got {self.workers!r}")
        _check(self.data_on in DATA_ON, f"unknown data_on {self.data_on!r}; expected one of {', '.join(DATA_ON)}")
        _check(self.precision in PRECISIONS,
               f"unknown precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        _check(isinstance(self.grid, int) and 2 <= self.grid <= MAX_GRID,
               f"grid must be an integer between 2 and {MAX_GRID}, got {self.grid!r}")
        _check(np.isfinite(self.margin) and 0 <= self.margin <= 10,
               f"margin must be between 0 and 10 (a fraction of the span), got {self.margin!r}")
        _check(np.isfinite(self.range) and self.range > 0,
               f"range must be a positive number, got {self.range!r}")
        _check(isinstance(self.bn_batch_size, int) and self.bn_batch_size >= 2,
               f"bn_batch_size must be an integer >= 2, got {self.bn_batch_size!r}")
        _check(len(self.splits) > 0 and set(self.splits) <= set(SPLITS)
               and len(set(self.splits)) == len(self.splits),
               f"splits must be distinct names from {', '.join(SPLITS)}, got {self.splits!r}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, int) and value >= 2),
                   f"{name} must be an integer >= 2, got {value!r}")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1,
               f"batch_size must be a positive integer, got {self.batch_size!r}")
        _check(self.engine in PATHS,
               f"unknown engine {self.engine!r}; expected one of {', '.join(PATHS)}")
        _check(self.group_size is None or (isinstance(self.group_size, int) and self.group_size >= 1),
               f"group_size must be a positive integer, got {self.group_size!r}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def plane(
    checkpoints: Sequence[str | os.PathLike | Checkpoint],
    *,
    out: str | os.PathLike,
    config: PlaneConfig = PlaneConfig(),
    data: str | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    group: Group = Group(),
) -> Surface:
    """Compute (or finish) a loss surface and write it to the HDF5 file ``out``.

    Args:
        checkpoints: [A] for a random plane around A; [A, B, C, *more] for the plane through
            A, B, C with further checkpoints projected onto it. Paths or loaded ``Checkpoint``s.
        out: the surface file (``.h5``). An existing file with the same configuration is resumed.
        config: grid, BN policy, splits and engine settings.
        data: dataset name; default: the one recorded in the checkpoints.
        data_root: where the dataset lives (CIFAR, caches).
        device: where evaluation runs.
        overwrite: replace an existing file computed with another configuration.
        group: under torchrun, this process's place (``landscape.distributed.init_from_env()``);
            the points are shared dynamically among the processes.

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
    ckpts = [c if isinstance(c, Checkpoint) else load_checkpoint(c) for c in checkpoints]
    if len(ckpts) == 2:
        raise UserError("a plane needs one checkpoint (random plane) or three or more; "
                        "for two use `landscape interp A B`")
    if not ckpts:
        raise UserError("a plane needs at least one checkpoint")
    dataset, layout, vecs = prepare(ckpts, data)
    policy = resolve_policy(config.bn, ckpts[0].model)
    basis, x, y, points = _geometry(ckpts, vecs, layout, config)
    if policy == "interpolate" and basis.mode != "three_point":
        raise UserError("--bn interpolate needs three checkpoints; use recompute or keep")
    identity = _identity(ckpts, dataset, config, policy, basis.mode)
    runtime = _runtime(ckpts, device, config)
    dev = torch.device(device)
    fresh = overwrite or not Path(out).exists()
    bufs = _buffer_fn(ckpts, basis, policy)
    make_evaluator = evaluator_factory(ckpts, layout, dataset, config, policy, data_root, dev)
    evaluate_grid(
        out,
        lambda: SurfaceStore.open(out, x=x, y=y, splits=config.splits, points=points,
                                  config={"identity": identity, "runtime": runtime},
                                  overwrite=overwrite),
        make_evaluator,
        lambda ji: basis.point(float(x[ji[1]]), float(y[ji[0]])),
        None if bufs is None else lambda ji: bufs(float(x[ji[1]]), float(y[ji[0]])),
        engine=config.engine, group_size=config.group_size or 8,
        tune_group=config.group_size is None, total=len(x) * len(y),
        desc="plane", fresh=fresh, group=group,
    )
    group.barrier()
    return read_surface(out)


# ----------------------------------------------------------------------------- shared with paths


def prepare(ckpts: Sequence[Checkpoint], data: str | None):
    """Check the checkpoints against each other and the dataset; returns the dataset name, the
    weight layout and every checkpoint's (P,) float64 weight vector."""
    check_compatible(ckpts)
    dataset = data or common_dataset(ckpts)
    _check_classes(ckpts[0], dataset)
    layout = ParamLayout.of(ckpts[0].model)
    vecs = [layout.flatten(c.model.state_dict()) for c in ckpts]
    for c, v in zip(ckpts, vecs):
        if not torch.isfinite(v).all():
            raise UserError(f"{c.name} has non-finite weights (NaN or inf); it cannot be evaluated")
    return dataset, layout, vecs


def evaluator_factory(ckpts, layout, dataset, config, policy, data_root, device):
    """A function that loads the resident data and builds the evaluator (called only when
    there are points to compute)."""

    def make() -> GridEvaluator:
        resident = _resident_data(dataset, config, policy, data_root, torch.device(device))
        evaluator = GridEvaluator(ckpts[0].model, layout, resident, bn_policy=policy,
                                  bn_batch_size=config.bn_batch_size, batch_size=config.batch_size,
                                  precision=config.precision, channels_last=config.channels_last,
                                  workers=config.workers)
        _check_inputs(evaluator.model, ckpts[0].meta.arch, resident, dataset)
        return evaluator

    return make


# ----------------------------------------------------------------------------- checks


def check_compatible(ckpts: Sequence[Checkpoint]) -> None:
    """Same architecture, head and tensor shapes; names the first difference."""
    ref = ckpts[0]
    ref_state = ref.model.state_dict()
    for c in ckpts[1:]:
        for field in ("arch", "arch_kwargs", "num_classes"):
            a, b = getattr(ref.meta, field), getattr(c.meta, field)
            if a != b:
                raise UserError(f"checkpoints differ in {field}: {ref.name} has {a!r}, "
                                f"{c.name} has {b!r}; all must share one architecture")
        state = c.model.state_dict()
        for k, v in ref_state.items():
            if k not in state or state[k].shape != v.shape:
                got = tuple(state[k].shape) if k in state else "missing"
                raise UserError(f"checkpoints differ at tensor {k}: {ref.name} has "
                                f"{tuple(v.shape)}, {c.name} has {got}")


def common_dataset(ckpts: Sequence[Checkpoint]) -> str:
    names = {c.meta.dataset for c in ckpts if c.meta.dataset}
    if len(names) > 1:
        raise UserError(f"checkpoints record different datasets {sorted(names)}; pass --data")
    if not names:
        raise UserError("the checkpoints do not record a dataset; pass --data NAME")
    return names.pop()


def _check_classes(ckpt: Checkpoint, dataset: str) -> None:
    n = dataset_info(dataset).num_classes
    if n != ckpt.meta.num_classes:
        raise UserError(f"{ckpt.name} has {ckpt.meta.num_classes} classes but dataset {dataset} "
                        f"has {n}; pass the dataset the models were trained on")


def _check_inputs(model: torch.nn.Module, arch: str, data: EvalData, dataset: str) -> None:
    """Run two samples through the engine's private model: a shape mismatch becomes one line."""
    x = data.batch(next(iter(data.splits.values()))[0][:2])
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as exc:
        raise UserError(f"model {arch} cannot take inputs of dataset {dataset} "
                        f"(shape {tuple(x.shape[1:])}): {str(exc).splitlines()[0][:120]}") from None


# ----------------------------------------------------------------------------- geometry


def _geometry(ckpts, vecs, layout, config):
    g = config.grid
    if len(ckpts) == 1:
        params = dict(ckpts[0].model.named_parameters())
        basis = random_basis(params, layout, seed=config.seed, ignore_1d=config.ignore_1d)
        x = y = np.linspace(-config.range, config.range, g)
    else:
        basis = three_point_basis(*vecs[:3])
        xs = [0.0, basis.norm_b, basis.c_u]
        x = axis(min(xs), max(xs), config.margin, g)
        y = axis(0.0, basis.norm_c_perp, config.margin, g)
    points = {}
    for c, v in zip(ckpts, vecs):
        name = c.name
        while name in points:
            name += "_"
        points[name] = PointInfo(*basis.project(v))
    return basis, x, y, points


def _buffer_fn(ckpts, basis: PlaneBasis, policy: str):
    """Per-point BN buffers for interpolate/keep (None for recompute)."""
    if policy == "recompute":
        return None
    names = [f"{n}.{b}" if n else b for n, _ in bn_modules(ckpts[0].model)
             for b in ("running_mean", "running_var", "num_batches_tracked")]
    states = [c.model.state_dict() for c in ckpts[:3]]
    keep = {n: states[0][n] for n in names}
    if policy == "keep":
        return lambda xv, yv: keep

    def interpolated(xv: float, yv: float) -> dict[str, torch.Tensor]:
        coef = basis.coefficients(xv, yv)
        return {n: (sum(c * s[n].double() for c, s in zip(coef, states)).float()
                    if s0.is_floating_point() else s0)
                for n in names for s0 in [states[0][n]]}

    return interpolated


# ----------------------------------------------------------------------------- running


def _resident_data(dataset, config: PlaneConfig, policy, root, device) -> EvalData:
    """The splits the plane needs, on the device; images stay uint8 there (a quarter of the
    memory of floats) and are decoded batch by batch, bit-identically. Data too large for the
    GPU stays in host memory and is copied to it batch by batch (``landscape.data.place``)."""
    subsets = {"train": config.train_subset, "test": config.test_subset}
    need = set(config.splits) | ({"train"} if policy == "recompute" else set())
    tensors, decode = {}, None
    for split in SPLITS:
        if split in need:
            ds = load_dataset(dataset, split, root)
            res = as_resident(ds, subset_indices(len(ds), subsets[split], seed=config.seed))
            tensors[split] = (res.inputs, res.labels)
            decode = decode or res.decode
    tensors, on_host = place(tensors, device, copies=2 if config.channels_last else 1, where=config.data_on)
    bn_inputs = tensors["train"][0] if policy == "recompute" else None
    return EvalData({s: tensors[s] for s in config.splits}, bn_inputs, decode, device if on_host else None)


# ----------------------------------------------------------------------------- config


def _identity(ckpts, dataset, config: PlaneConfig, policy, mode) -> dict[str, Any]:
    cfg = asdict(config)
    for knob in ENGINE_KNOBS:
        cfg.pop(knob)
    if mode == "three_point":
        cfg.pop("range"), cfg.pop("ignore_1d")
    else:
        cfg.pop("margin")
    cfg["splits"] = list(config.splits)
    drop_inert(cfg, config, policy, random_plane=mode == "random")
    cfg.update(
        mode=mode,
        bn=policy,
        dataset=dataset,
        arch=ckpts[0].meta.arch,
        checkpoints=[{"name": c.name, "sha256": c.sha256 or _weights_sha256(c)} for c in ckpts],
        format_version=FORMAT_VERSION,
    )
    return cfg


ENGINE_KNOBS = ("batch_size", "engine", "group_size", "channels_last", "workers", "data_on")


def drop_inert(cfg: dict[str, Any], config, policy: str, *, random_plane: bool) -> None:
    """Remove settings that cannot change the numbers, so that a rerun differing only in them
    resumes instead of being refused: the BN batch size without BN recompute, a subset of a split
    that is not used, and the seed when nothing random depends on it. fp32 precision is left
    out too, so files written before the precision setting existed still resume."""
    if cfg.get("precision") == "fp32":
        cfg.pop("precision")
    uses_train = "train" in config.splits or policy == "recompute"
    uses_test = "test" in config.splits
    if policy != "recompute":
        cfg.pop("bn_batch_size", None)
    if not uses_train:
        cfg.pop("train_subset", None)
    if not uses_test:
        cfg.pop("test_subset", None)
    subsets = (uses_train and config.train_subset) or (uses_test and config.test_subset)
    if not random_plane and not subsets:
        cfg.pop("seed", None)


def _weights_sha256(ckpt: Checkpoint) -> str:
    h = hashlib.sha256()
    for k, v in ckpt.model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return "weights:" + h.hexdigest()


def _runtime(ckpts, device, config: PlaneConfig) -> dict[str, Any]:
    import h5py

    import landscape

    return {
        "device": str(device),
        "checkpoint_paths": [str(c.path) if c.path else None for c in ckpts],
        "batch_size": config.batch_size,
        "group_size": config.group_size or 8,
        "channels_last": config.channels_last,
        "workers": config.workers,
        "data_on": config.data_on,
        "versions": {"landscape": landscape.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "h5py": h5py.__version__,
                     "python": platform.python_version()},
    }
