"""What every grid evaluation prepares before its first point: the checkpoints checked against
each other and the dataset, their weight vectors, the evaluation data, the evaluator, and the
runtime part of the file's configuration. Planes and paths (``landscape.surfaces``) share it."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from landscape.assets.checkpoint import Checkpoint
from landscape.assets.datasets import dataset_info, load_dataset
from landscape.assets.resident import SPLITS, as_resident, place, subset_indices
from landscape.engine.evaluator import GridEvaluator
from landscape.engine.inputs import EvalData
from landscape.engine.layout import ParamLayout
from landscape.errors import UserError
from landscape.grid.settings import GridSettings


def prepare(ckpts: Sequence[Checkpoint], data: str | None) -> tuple[str, ParamLayout, list[torch.Tensor]]:
    """Check the checkpoints against each other and the dataset; returns the dataset name, the
    weight layout and every checkpoint's (P,) float64 weight vector.

    Raises:
        UserError: the checkpoints differ in architecture or shapes, name no common dataset, do
            not fit the dataset's classes, or hold non-finite weights.
    """
    check_compatible(ckpts)
    dataset = data or common_dataset(ckpts)
    check_classes(ckpts[0], dataset)
    layout = ParamLayout.of(ckpts[0].model)
    vecs = [layout.flatten(c.model.state_dict()) for c in ckpts]
    for c, v in zip(ckpts, vecs):
        if not torch.isfinite(v).all():
            raise UserError(f"{c.name} has non-finite weights (NaN or inf); it cannot be evaluated")
    return dataset, layout, vecs


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
    """The one dataset the checkpoints record."""
    names = {c.meta.dataset for c in ckpts if c.meta.dataset}
    if len(names) > 1:
        raise UserError(f"checkpoints record different datasets {sorted(names)}; pass --data")
    if not names:
        raise UserError("the checkpoints do not record a dataset; pass --data NAME")
    return names.pop()


def check_classes(ckpt: Checkpoint, dataset: str) -> None:
    n = dataset_info(dataset).num_classes
    if n != ckpt.meta.num_classes:
        raise UserError(f"{ckpt.name} has {ckpt.meta.num_classes} classes but dataset {dataset} "
                        f"has {n}; pass the dataset the models were trained on")


def evaluator_factory(ckpts: Sequence[Checkpoint], layout: ParamLayout, dataset: str, settings: GridSettings,
                      policy: str, data_root: Any, device: torch.device | str) -> Callable[[], GridEvaluator]:
    """A function that loads the evaluation data and builds the evaluator (called only when
    there are points to compute)."""

    def make() -> GridEvaluator:
        resident = evaluation_data(dataset, settings, policy, data_root, torch.device(device))
        evaluator = GridEvaluator(ckpts[0].model, layout, resident, bn_policy=policy,
                                  bn_batch_size=settings.bn_batch_size, batch_size=settings.batch_size,
                                  precision=settings.precision, channels_last=settings.channels_last,
                                  workers=settings.workers)
        check_inputs(evaluator.model, ckpts[0].meta.arch, resident, dataset)
        return evaluator

    return make


def check_inputs(model: torch.nn.Module, arch: str, data: EvalData, dataset: str) -> None:
    """Run two samples through the engine's private model: a shape mismatch becomes one line."""
    x = data.batch(next(iter(data.splits.values()))[0][:2])
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as exc:
        raise UserError(f"model {arch} cannot take inputs of dataset {dataset} "
                        f"(shape {tuple(x.shape[1:])}): {str(exc).splitlines()[0][:120]}") from None


def evaluation_data(dataset: str, settings: GridSettings, policy: str, root: Any, device: torch.device) -> EvalData:
    """The splits the evaluation needs, on the device; images stay uint8 there (a quarter of
    the memory of floats) and are decoded batch by batch, bit-identically. Data too large for
    the GPU stays in host memory and is copied to it batch by batch
    (``landscape.assets.resident.place``)."""
    subsets = {"train": settings.train_subset, "test": settings.test_subset}
    need = set(settings.splits) | ({"train"} if policy == "recompute" else set())
    tensors, decode = {}, None
    for split in SPLITS:
        if split in need:
            ds = load_dataset(dataset, split, root)
            res = as_resident(ds, subset_indices(len(ds), subsets[split], seed=settings.seed))
            tensors[split] = (res.inputs, res.labels)
            decode = decode or res.decode
    tensors, on_host = place(tensors, device, copies=2 if settings.channels_last else 1, where=settings.data_on)
    bn_inputs = tensors["train"][0] if policy == "recompute" else None
    return EvalData({s: tensors[s] for s in settings.splits}, bn_inputs, decode, device if on_host else None)


def runtime(ckpts: Sequence[Checkpoint], device: torch.device | str, settings: GridSettings) -> dict[str, Any]:
    """The runtime part of a file's configuration: free to change between runs."""
    import h5py

    import landscape

    return {
        "device": str(device),
        "checkpoint_paths": [str(c.path) if c.path else None for c in ckpts],
        "batch_size": settings.batch_size,
        "group_size": settings.group,
        "channels_last": settings.channels_last,
        "workers": settings.workers,
        "data_on": settings.data_on,
        "versions": {"landscape": landscape.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "h5py": h5py.__version__,
                     "python": platform.python_version()},
    }
