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
from landscape.assets.datasets import dataset_info, is_dataset_name, load_dataset
from landscape.assets.images import ImageTransform
from landscape.assets.imports import is_import_path
from landscape.assets.resident import SPLITS, as_resident, place, subset_indices
from landscape.assets.resolve import data_from_spec, model_transform, recorded_transform
from landscape.assets.userdata import Data
from landscape.engine.evaluator import GridEvaluator
from landscape.engine.inputs import EvalData
from landscape.engine.layout import ParamLayout
from landscape.errors import UserError
from landscape.grid.objectives import objective
from landscape.grid.settings import GridSettings

Dataset = str | Data  # a registered name, or the user's own data


def prepare(ckpts: Sequence[Checkpoint], data: str | Data | None
            ) -> tuple[Dataset, ParamLayout, list[torch.Tensor]]:
    """Check the checkpoints against each other and the data; returns the data (a registered
    name or ``Data``), the weight layout and every checkpoint's (P,) float64 weight vector.

    ``data``: a registered name, ``path/to/file.py:factory`` (``landscape.assets.userdata``),
    ``Data``, or None for the dataset the checkpoints record.

    Raises:
        UserError: the checkpoints differ in architecture or shapes, name no common dataset, do
            not fit the dataset's classes, or hold non-finite weights.
    """
    check_compatible(ckpts)
    dataset = resolve_data(data, ckpts)
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


def resolve_data(data: str | Data | None, ckpts: Sequence[Checkpoint]) -> Dataset:
    """The data to evaluate on. A registered name wins over an import path of the same spelling;
    an import path is imported only when the user gives it, never because a checkpoint records it."""
    if isinstance(data, Data):
        return data
    if data is None:
        name = common_dataset(ckpts)
        if not is_dataset_name(name) and is_import_path(name):
            raise UserError(f"the checkpoints record the dataset {name!r}, a factory of your own; pass "
                            f"--data {name} (data=...) to run it")
        return name
    if not isinstance(data, str):
        raise UserError(f"data must be a dataset name, path/to/file.py:factory or landscape.Data, "
                        f"got {type(data).__name__}")
    if not is_dataset_name(data) and is_import_path(data):
        return data_from_spec(data)
    return data


def data_name(dataset: Dataset) -> str:
    """The name a result file records for the data."""
    return dataset.name if isinstance(dataset, Data) else dataset


def data_identity(dataset: Dataset, settings: GridSettings, policy: str) -> dict[str, Any] | None:
    """For the user's own data, the size and content hash of each split used (None for a
    registered dataset, whose name says it)."""
    if not isinstance(dataset, Data):
        return None
    return dataset.identity(used_splits(settings, policy))


def image_transform(dataset: Dataset, settings: GridSettings, ckpts: Sequence[Checkpoint]) -> ImageTransform | None:
    """The complete evaluation transform of an image dataset (None for other data): the settings'
    ``image``, then the transform the checkpoints trained on this dataset record, then the
    dataset's, the first checkpoint's ``timm:`` and the generic defaults
    (``assets.resolve.model_transform``). The identity and the evaluator both call it, so the
    file records what is used.

    Raises:
        UserError: image settings for data that is not an image dataset, inconsistent ones, or
            checkpoints of this dataset that record different transforms (and no flags say which).
    """
    if isinstance(dataset, Data):
        if settings.image is not None:
            raise UserError(f"the data {dataset.name!r} is not an image dataset: an image size, mean, std "
                            "or channels apply only to image datasets (cifar10, cifar100, imagefolder:PATH)")
        return None
    ckpt = ckpts[0]
    return model_transform(dataset, settings.image, arch=ckpt.meta.arch, model=ckpt.model,
                           arch_kwargs=ckpt.meta.arch_kwargs, trained=trained_transform(dataset, settings, ckpts))


def trained_transform(dataset: str, settings: GridSettings, ckpts: Sequence[Checkpoint]) -> ImageTransform | None:
    """The one transform that the checkpoints trained on ``dataset`` record (None if none does)."""
    found = {c.name: recorded_transform(c.meta.extra, c.name) for c in ckpts if c.meta.dataset == dataset}
    found = {name: tf for name, tf in found.items() if tf is not None}
    distinct = {tf for tf in found.values()}
    if len(distinct) > 1 and settings.image is None:
        names = ", ".join(found)
        raise UserError(f"{names} were trained on {dataset} with different image transforms; say which to "
                        "evaluate with (--img-size, --mean, --std, --img-channels)")
    return next(iter(found.values()), None)


def image_identity(dataset: Dataset, settings: GridSettings, ckpts: Sequence[Checkpoint]) -> dict[str, Any] | None:
    """The identity's ``image`` entry: the transform used (None, and no entry, for other data)."""
    tf = image_transform(dataset, settings, ckpts)
    return None if tf is None else tf.to_dict()


def used_splits(settings: GridSettings, policy: str) -> list[str]:
    """The splits an evaluation reads: those evaluated, and train for BN recompute."""
    return [s for s in SPLITS if s in settings.splits or (s == "train" and policy == "recompute")]


def check_classes(ckpt: Checkpoint, dataset: Dataset) -> None:
    if isinstance(dataset, Data):
        if dataset.num_classes is not None and dataset.num_classes != ckpt.meta.num_classes:
            raise UserError(f"{ckpt.name} has {ckpt.meta.num_classes} classes but the data {dataset.name!r} "
                            f"has {dataset.num_classes}; pass the data the models were trained on")
        return
    n = dataset_info(dataset).num_classes
    if n != ckpt.meta.num_classes:
        raise UserError(f"{ckpt.name} has {ckpt.meta.num_classes} classes but dataset {dataset} "
                        f"has {n}; pass the dataset the models were trained on")


def evaluator_factory(ckpts: Sequence[Checkpoint], layout: ParamLayout, dataset: Dataset, settings: GridSettings,
                      policy: str, data_root: Any, device: torch.device | str) -> Callable[[], GridEvaluator]:
    """A function that loads the evaluation data and builds the evaluator (called only when
    there are points to compute)."""

    def make() -> GridEvaluator:
        image = image_transform(dataset, settings, ckpts)
        resident = evaluation_data(dataset, settings, policy, data_root, torch.device(device), image=image)
        scored_by = objective(settings.loss, settings.accuracy)
        evaluator = GridEvaluator(ckpts[0].model, layout, resident, bn_policy=policy,
                                  bn_batch_size=settings.bn_batch_size, batch_size=settings.batch_size,
                                  precision=settings.precision, channels_last=settings.channels_last,
                                  workers=settings.workers, objective=scored_by)
        check_inputs(evaluator.model, ckpts[0].meta.arch, resident, data_name(dataset))
        if scored_by.per_sample is None or scored_by.accuracy:  # cross-entropy, accuracy: class indices
            check_labels(resident, ckpts[0].meta.num_classes, data_name(dataset))
        return evaluator

    return make


def check_inputs(model: torch.nn.Module, arch: str, data: EvalData, dataset: str) -> None:
    """Run two samples through the engine's private model: any failure (a shape mismatch, a timm
    ViT's input-size assertion, an error in the user's own forward) becomes one line."""
    x = data.batch(next(iter(data.splits.values()))[0][:2])
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:  # noqa: BLE001 - the model may be the user's code: report any error in one line
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "(no message)"
        raise UserError(f"model {arch} cannot take inputs of dataset {dataset} (shape {tuple(x.shape[1:])}): "
                        f"{type(exc).__name__}: {text}; check the input size and transform") from None


def check_labels(data: EvalData, num_classes: int, name: str) -> None:
    """Class labels in [0, num_classes) for the cross-entropy and the accuracy."""
    for split, (_, y) in data.splits.items():
        if y.is_floating_point() or (len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes)):
            raise UserError(f"the {split} labels of {name!r} must be class indices in [0, {num_classes}) for the "
                            f"model's {num_classes} classes, got {y.dtype} in [{y.min().item()}, {y.max().item()}]")


def evaluation_data(dataset: Dataset, settings: GridSettings, policy: str, root: Any, device: torch.device,
                    *, image: ImageTransform | None = None) -> EvalData:
    """The splits the evaluation needs, on the device; images stay uint8 there (a quarter of
    the memory of floats) and are decoded batch by batch, bit-identically. Data too large for
    the GPU stays in host memory and is copied to it batch by batch
    (``landscape.assets.resident.place``). ``image``: an image dataset's transform
    (``image_transform``), passed to its loader."""
    options = {} if image is None else {"image": image}
    subsets = {"train": settings.train_subset, "test": settings.test_subset}
    tensors, decode = {}, None
    for split in used_splits(settings, policy):
        ds = dataset.dataset(split) if isinstance(dataset, Data) else load_dataset(dataset, split, root, **options)
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
