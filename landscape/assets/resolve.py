"""What a model is trained and evaluated on: a dataset's name for ``landscape.Data`` objects, and
the image transform for a model (the user's settings, what the checkpoint records, the dataset's
and the model's defaults)."""

from __future__ import annotations

from typing import Any

from landscape.assets.datasets import dataset_info, dataset_names, is_dataset_name, register_dataset
from landscape.assets.images import GENERIC, ImageTransform, timm_defaults
from landscape.assets.imports import import_object, is_import_path
from landscape.assets.models import TIMM_PREFIX
from landscape.assets.resident import SPLITS
from landscape.assets.userdata import Data, data_factory
from landscape.errors import UserError

_USER_DATA: dict[str, Data] = {}  # the landscape.Data objects dataset_name registered, by name


def dataset_name(data: str | Data) -> str:
    """A registered dataset's name for ``data``: a name is returned as is; ``path/to/file.py:factory``
    (or ``package.module:factory``, named by the caller) is called for its splits (``landscape.Data``
    or a dict of splits, ``userdata.data_factory``); a ``landscape.Data`` is registered under its ``name`` for the rest of the process (its splits read once into
    tensors), so that training, run directories and their readers refer to it by name. Its
    classes are ``num_classes``, else one more than its largest label.

    Raises:
        UserError: not a name or ``Data``, or a ``Data`` named like a dataset of another kind.
    """
    if isinstance(data, str):
        if is_dataset_name(data) or not is_import_path(data):
            return data
        data = data_from_spec(data)
    if not isinstance(data, Data):
        raise UserError(f"data must be a dataset name, path/to/file.py:factory or landscape.Data, "
                        f"got {type(data).__name__}")
    name = data.name
    if ":" in name or (name in dataset_names() and name not in _USER_DATA):
        raise UserError(f"Data(name={name!r}) is taken by a registered dataset or holds ':'; give your data "
                        "another name")
    splits = [s for s in SPLITS if data.has(s)]
    inputs, _ = data.tensors(splits[0])
    register_dataset(name, lambda split, **_: data.dataset(split), num_classes=data_classes(data, splits),
                     input_shape=tuple(inputs.shape[1:]), description=f"your own data {name}", overwrite=True)
    _USER_DATA[name] = data
    return name


def data_from_spec(spec: str) -> Data:
    """``path/to/file.py:factory`` (named by the user): the factory's splits as ``Data``."""
    return data_factory(spec, lambda name: import_object(name, what="--data"))


def user_data_identity(name: str) -> dict[str, Any] | None:
    """For a name ``dataset_name`` registered for a ``landscape.Data``, the size and content hash
    of each of its splits (a run directory records them, so a rerun on other data is refused);
    None for other datasets."""
    data = _USER_DATA.get(name)
    return None if data is None else data.identity([s for s in SPLITS if data.has(s)])


def data_classes(data: Data, splits: list[str]) -> int:
    """``data.num_classes``, else one more than the largest integer label of ``splits``."""
    if data.num_classes is not None:
        return data.num_classes
    labels = [data.tensors(s)[1] for s in splits]
    if any(y.is_floating_point() or not len(y) for y in labels):
        raise UserError(f"give Data(num_classes=...) for {data.name!r}: its labels are not class indices")
    return int(max(int(y.max()) for y in labels)) + 1


def model_transform(name: str, image: ImageTransform | None, *, arch: str, model: Any = None,
                    arch_kwargs: dict[str, Any] | None = None,
                    trained: ImageTransform | None = None) -> ImageTransform | None:
    """The complete transform of the image dataset ``name`` for a model (None for other data).

    Each field comes from the first that sets it: ``image`` (the user's flags), ``trained`` (the
    transform a checkpoint records it was trained with), what the dataset fixes itself
    (``DatasetInfo.image``: CIFAR its 32 px and statistics, an ImageFolder tree only RGB), a
    ``timm:`` model's pretrained configuration (``images.timm_defaults``), then ``images.GENERIC``
    (256 -> 224 px, ImageNet statistics). Training and evaluation both call it, so a model is
    evaluated as it was trained unless the user says otherwise.

    Raises:
        UserError: image settings for data that is not an image dataset, or inconsistent ones.
    """
    declared = dataset_info(name).image
    if declared is None:
        if image is not None:
            raise UserError(f"the data {name!r} is not an image dataset: an image size, mean, std or channels "
                            "apply only to image datasets (cifar10, cifar100, imagefolder:PATH)")
        return None
    base = timm_defaults(model, arch_kwargs) if model is not None and arch.startswith(TIMM_PREFIX) else GENERIC
    base = declared.over(base)
    if trained is not None:
        base = trained.over(base)
    return (image or ImageTransform()).resolved(base)


def recorded_transform(extra: Any, where: str) -> ImageTransform | None:
    """The training transform a checkpoint's metadata records (``extra["image"]``), checked."""
    doc = extra.get("image") if isinstance(extra, dict) else None
    if doc is None:
        return None
    names = {"size", "resize", "mean", "std", "channels", "interpolation"}
    if not isinstance(doc, dict) or not set(doc) <= names:
        raise UserError(f"{where}: metadata field extra.image must be an object with keys {sorted(names)}, "
                        f"got {str(doc)[:80]}")
    try:
        return ImageTransform(**doc)
    except UserError as exc:
        raise UserError(f"{where}: metadata field extra.image: {exc}") from None
