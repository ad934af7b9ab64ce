"""What a training run reads besides its model: the image transform it trains with (recorded in
the checkpoints it writes) and a check that the model takes the data at all."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from landscape.assets.images import ImageTransform
from landscape.assets.resident import ArrayDataset
from landscape.assets.resolve import model_transform, recorded_transform
from landscape.errors import UserError, first_line


def training_transform(start, data: str, image: ImageTransform | None) -> ImageTransform | None:
    """The transform to train ``start`` (a ``Checkpoint``) on the dataset ``data`` with:
    ``image``, then the one ``start`` records if it was trained on ``data`` itself, then the
    dataset's and the model's defaults (``assets.resolve.model_transform``)."""
    trained = recorded_transform(start.meta.extra, start.name) if start.meta.dataset == data else None
    return model_transform(data, image, arch=start.meta.arch, model=start.model,
                           arch_kwargs=start.meta.arch_kwargs, trained=trained)


def image_record(transform: ImageTransform | None) -> dict:
    """The checkpoint metadata entry of a training transform (none for other data)."""
    return {} if transform is None else {"image": transform.to_dict()}


def check_fits(model: nn.Module, dataset: Dataset, data: str, device, *, labels: bool = True) -> None:
    """Run two samples of ``dataset`` through ``model`` (eval mode, no gradient) before any
    training: a model that cannot take the data's inputs (or, with ``labels``, a resident
    dataset's labels outside its head) is one line."""
    if len(dataset) < 2:
        raise UserError(f"the train split of {data!r} has {len(dataset)} sample(s); training needs at least 2")
    with torch.random.fork_rng(devices=[]):  # a random augmentation must not shift the training's draws
        x = torch.stack([torch.as_tensor(dataset[i][0]) for i in range(2)])
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(x.to(device))
    except Exception as exc:  # noqa: BLE001 - the model may be the user's code: report any error in one line
        raise UserError(f"{type(model).__name__} cannot take the inputs of {data!r} (shape {tuple(x.shape[1:])}): "
                        f"{type(exc).__name__}: {first_line(exc)}; check --arch and the image flags") from None
    finally:
        model.train(was_training)
    if out.dim() != 2:
        raise UserError(f"{type(model).__name__} returns outputs of shape {tuple(out.shape)} on {data!r}; "
                        "training needs (batch, classes) logits")
    labels = dataset.labels if labels and isinstance(dataset, ArrayDataset) else None  # at hand: check them all
    if labels is not None and len(labels) and (labels.is_floating_point() or int(labels.min()) < 0
                                               or int(labels.max()) >= out.shape[1]):
        raise UserError(f"the train labels of {data!r} must be class indices in [0, {out.shape[1]}) for the model's "
                        f"{out.shape[1]} outputs, got {labels.dtype} in [{labels.min().item()}, {labels.max().item()}]")
