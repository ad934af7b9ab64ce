"""Dataset registry: the embedded MNIST-1D sets, CIFAR-10/100, ImageFolder directories, and yours.

``load_dataset(name, split)`` returns a torch ``Dataset`` of ``(input, label)`` pairs with the
*evaluation* transform (``train_transform=True`` gives the training augmentation instead).
Every name resolves through one registry, filled with ``register_dataset``: the built-in
datasets below are registered exactly as a user registers their own.

Example: a dataset of your own, usable by name everywhere (``--data toy`` on the command line
once the module that registers it is imported):

    >>> import torch
    >>> from landscape import register_dataset, load_dataset
    >>> from landscape.assets.resident import ArrayDataset
    >>> @register_dataset("toy", num_classes=3, input_shape=(8,), default_arch="my_mlp",
    ...                   description="three Gaussian blobs")
    ... def toy(split, *, root=None, **options):
    ...     g = torch.Generator().manual_seed(0 if split == "train" else 1)
    ...     labels = torch.randint(0, 3, (300,), generator=g)
    ...     return ArrayDataset(torch.randn(300, 8, generator=g) + labels[:, None], labels)
    >>> len(load_dataset("toy", "test"))
    300
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from torch.utils.data import Dataset

from landscape.assets.images import (
    CIFAR_DEFAULTS,
    IMAGEFOLDER_DEFAULTS,
    ImageTransform,
    imagefolder_classes,
    load_cifar,
    load_imagefolder,
)
from landscape.assets.mnist1d import load_mnist1d
from landscape.assets.registry import Registry
from landscape.assets.resident import SPLITS
from landscape.errors import UserError

IMAGEFOLDER_PREFIX = "imagefolder:"

# loader(split, *, root, download, train_transform[, image]) -> Dataset; a family's loader gets
# its argument first: loader(arg, split, *, root, download, train_transform[, image]).
DatasetLoader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the toolkit needs to know about a registered dataset.

    Attributes:
        name: the registry name.
        num_classes: the number of labels (the size of a model's head).
        default_arch: the model ``landscape pretrain`` builds when no ``--arch`` is given
            (None: the user must name one).
        description: one line for listings.
        input_shape: the shape of one input with the evaluation transform, e.g. ``(40,)`` or
            ``(3, 32, 32)`` (None where unknown).
        image: for an image dataset, the parts of its evaluation transform it fixes itself
            (``ImageTransform``; the rest comes from a ``timm:`` model's configuration or
            ``images.GENERIC``). Its loader then takes ``image=ImageTransform(...)``. None: not
            an image dataset (``--img-size`` and the like are refused).
    """

    name: str
    num_classes: int
    default_arch: str | None
    description: str
    input_shape: tuple[int, ...] | None = None
    image: ImageTransform | None = None


@dataclass(frozen=True)
class RegisteredDataset:
    """One registry entry: the loader and its info (a family's info is a function of its argument)."""

    loader: DatasetLoader
    info: Union[DatasetInfo, Callable[[str], DatasetInfo]]


_DATASETS: Registry[RegisteredDataset] = Registry("dataset")


def register_dataset(
    name: str,
    loader: DatasetLoader | None = None,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    default_arch: str | None = None,
    description: str = "",
    info: Callable[[str], DatasetInfo] | None = None,
    image: ImageTransform | None = None,
    overwrite: bool = False,
) -> Any:
    """Register a dataset under ``name``; usable as a function or as a decorator of the loader.

    The loader is called as ``loader(split, root=..., download=..., train_transform=...)``
    (accept ``**options`` to ignore what you do not use; an image dataset, registered with
    ``image=``, also gets ``image=ImageTransform(...)`` whenever one is given: ``plane`` and
    ``interpolate`` always give the resolved one) and returns a torch ``Dataset`` of ``(input, label)`` pairs, labels in ``0..num_classes-1``; return an ``ArrayDataset`` where
    the data is already tensors, so that evaluation takes them without a copy.

    A name ending in ``:`` registers a family of parametrised names, as ``imagefolder:`` does
    for ``imagefolder:PATH``: its loader is called with the argument first,
    ``loader(arg, split, ...)``, and ``info(arg)`` returns the ``DatasetInfo`` of one member
    (instead of ``num_classes`` and the rest); messages list it as ``NAME:PATH``.

    Args:
        name: the registry name (no ``:``), or a family name ending in ``:``.
        loader: the loader; omit it to use ``register_dataset(...)`` as a decorator.
        num_classes: the number of labels (required for a plain name).
        input_shape: the shape of one transformed input, e.g. ``(3, 32, 32)``.
        default_arch: the model to build when none is named (a ``create_model`` name).
        description: one line for listings.
        info: a family's ``DatasetInfo`` from its argument (families only).
        image: an image dataset's own evaluation transform settings (``DatasetInfo.image``).
        overwrite: replace a dataset already registered under ``name``.

    Returns:
        ``loader`` (unchanged), or, without one, a decorator that registers and returns it.

    Raises:
        ValueError: a malformed or taken name, or info that does not fit the kind of name.

    Example:
        >>> _ = register_dataset("blobs", make_blobs, num_classes=3, input_shape=(8,))
        >>> train = load_dataset("blobs", "train")  # make_blobs("train", root=None, ...)
    """
    if loader is None:
        return functools.partial(register_dataset, name, num_classes=num_classes,
                                 input_shape=input_shape, default_arch=default_arch,
                                 description=description, info=info, image=image, overwrite=overwrite)
    if not callable(loader):
        raise TypeError(f"a dataset loader must be callable, got {loader!r}")
    if isinstance(name, str) and name.endswith(":"):
        if info is None or not callable(info) or num_classes is not None or image is not None:
            raise ValueError(f"the dataset family {name!r} needs info=<function of its argument "
                             "giving a DatasetInfo>, not num_classes or image")
        entry = RegisteredDataset(loader, info)
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"dataset {name!r} needs num_classes, a positive int; got {num_classes!r}")
        shape = tuple(int(n) for n in input_shape) if input_shape is not None else None
        if image is not None and not isinstance(image, ImageTransform):
            raise TypeError(f"image must be a landscape.ImageTransform, got {type(image).__name__}")
        entry = RegisteredDataset(loader, DatasetInfo(name, num_classes, default_arch, description, shape, image))
    _DATASETS.register(name, entry, usage=f"{name}PATH", overwrite=overwrite)
    return loader


def dataset_names() -> list[str]:
    """Registered names, sorted; ImageFolder directories are also accepted as ``imagefolder:PATH``."""
    return _DATASETS.names()


def is_dataset_name(name: str) -> bool:
    """Whether ``name`` is a registered dataset, or a name of a registered family such as
    ``imagefolder:PATH`` (which then wins over an import path of the same spelling)."""
    try:
        _DATASETS.resolve(name)
    except UserError:
        return False
    return True


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for ``name`` (for ``imagefolder:PATH`` the classes are counted on disk).

    Raises:
        UserError: an unknown name (the message lists the valid ones), or a bad ImageFolder root.

    Example:
        >>> dataset_info("cifar100").num_classes
        100
    """
    entry, arg = _DATASETS.resolve(name)
    return entry.info if arg is None else entry.info(arg)


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    train_transform: bool = False,
    image: ImageTransform | None = None,
) -> Dataset:
    """A torch Dataset of (input, label) pairs.

    Args:
        name: a registered name (see ``dataset_names()``) or ``imagefolder:PATH``.
        split: ``"train"`` or ``"test"``.
        root: where CIFAR lives (``--data-root``), or the cache for MNIST-1D
            (default ``$LANDSCAPE_CACHE`` or ``~/.cache/landscape``).
        download: let torchvision download CIFAR into ``root`` (never done otherwise).
        train_transform: the training augmentation instead of the evaluation transform.
        image: an image dataset's transform settings (size, mean, std, channels; unset ones
            take the dataset's defaults). Passed to the loader only when given.

    Returns:
        The split's ``Dataset`` (an ``ArrayDataset`` for MNIST-1D).

    Raises:
        UserError: unknown dataset or split, missing root or files.
        TypeError: a registered loader that returned no dataset.

    Example:
        >>> ds = load_dataset("mnist1d", "test")
        >>> x, y = ds[0]   # x: (40,) float32, y: int64 scalar
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    info = dataset_info(name)  # an unknown name or a bad ImageFolder root fails before any loading
    entry, arg = _DATASETS.resolve(name)
    options: dict[str, Any] = dict(root=root, download=download, train_transform=train_transform)
    if image is not None:
        if info.image is None:
            raise UserError(f"dataset {name!r} is not an image dataset: it takes no image size, mean, std or "
                            "channels (register it with image=ImageTransform(...) to make it one)")
        options["image"] = image
    ds = entry.loader(split, **options) if arg is None else entry.loader(arg, split, **options)
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise TypeError(f"the loader of dataset {name!r} returned {type(ds).__name__}; "
                        "expected a torch Dataset of (input, label) pairs")
    return ds


# ----------------------------------------------------------------------------- the built-ins


def _mnist1d(name: str, split: str, *, root: Any = None, **_: Any) -> Dataset:
    return load_mnist1d(name, split, root)


def _cifar(name: str, split: str, *, root: Any = None, download: bool = False,
           train_transform: bool = False, image: ImageTransform | None = None) -> Dataset:
    return load_cifar(name, split, root, download, train_transform, image)


def _imagefolder(path: str, split: str, *, train_transform: bool = False, image: ImageTransform | None = None,
                 **_: Any) -> Dataset:
    return load_imagefolder(Path(path), split, train_transform, image)


def _imagefolder_info(path: str) -> DatasetInfo:
    root = Path(path)
    classes = imagefolder_classes(root)
    return DatasetInfo(IMAGEFOLDER_PREFIX + path, len(classes), "timm:resnet18",
                       f"ImageFolder at {root}", (3, 224, 224), IMAGEFOLDER_DEFAULTS)


register_dataset("mnist1d", functools.partial(_mnist1d, "mnist1d"), num_classes=10,
                 input_shape=(40,), default_arch="mnist1d_cnn",
                 description="MNIST-1D, 4000 train / 1000 test (offline)")
register_dataset("mnist1d-source", functools.partial(_mnist1d, "mnist1d-source"), num_classes=10,
                 input_shape=(40,), default_arch="mnist1d_cnn",
                 description="MNIST-1D source set for pre-training, 38000 / 2000")
register_dataset("mnist1d-transfer", functools.partial(_mnist1d, "mnist1d-transfer"), num_classes=10,
                 input_shape=(40,), default_arch="mnist1d_cnn",
                 description="MNIST-1D transfer target, 1000 train / 10000 test, noisier (offline)")
register_dataset("mnist1d-transfer-val", functools.partial(_mnist1d, "mnist1d-transfer-val"), num_classes=10,
                 input_shape=(40,), default_arch="mnist1d_cnn",
                 description="the transfer target's 1000 train / its 1000 validation samples as test")
register_dataset("cifar10", functools.partial(_cifar, "cifar10"), num_classes=10,
                 input_shape=(3, 32, 32), default_arch="resnet20", image=CIFAR_DEFAULTS["cifar10"],
                 description="CIFAR-10 (torchvision; --data-root)")
register_dataset("cifar100", functools.partial(_cifar, "cifar100"), num_classes=100,
                 input_shape=(3, 32, 32), default_arch="resnet20", image=CIFAR_DEFAULTS["cifar100"],
                 description="CIFAR-100 (torchvision; --data-root)")
register_dataset(IMAGEFOLDER_PREFIX, _imagefolder, info=_imagefolder_info)
