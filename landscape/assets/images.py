"""Image datasets read from the user's disk: CIFAR-10/100 (torchvision files) and ImageFolder trees,
and ``ImageTransform``, the evaluation transform of an image dataset.

Nothing is downloaded unless asked (``download=True``). Each loader gives the evaluation
transform, or the training augmentation with ``train_transform=True``. The evaluation transform
is always ``[Resize, CenterCrop, Grayscale,] ToTensor, Normalize``, so evaluation keeps the
images as uint8 and decodes them bit-identically (``landscape.assets.resident.as_resident``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from landscape.assets.resident import SPLITS
from landscape.errors import UserError

CIFAR_STATS = {  # (mean, std) per channel
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
MAX_SIDE = 8192  # pixels: a larger size (say, from a checkpoint's metadata) is refused, not allocated


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


@dataclass(frozen=True)
class ImageTransform:
    """The evaluation transform of an image dataset; a field left None takes the default (the
    dataset's, then a ``timm:`` model's pretrained configuration, then ``GENERIC``).

    Attributes:
        size: the side of the square centre crop the model sees; 0: no resizing or cropping.
        resize: the shorter side is first resized to this (default: ``size`` when ``size`` is
            given, i.e. no margin cropped; 0: no resizing).
        mean, std: per-channel normalisation, one value per channel.
        channels: 1 (greyscale) or 3 (RGB).
        interpolation: of the resize: ``nearest``, ``bilinear`` or ``bicubic``.

    Example:
        >>> ImageTransform(size=32, mean=(0.5,), std=(0.25,), channels=1)
    """

    size: int | None = None
    resize: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int | None = None
    interpolation: str | None = None

    def __post_init__(self) -> None:
        for name in ("size", "resize"):
            v = getattr(self, name)
            _check(v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SIDE),
                   f"image {name} must be an integer in 0..{MAX_SIDE} (0: no resizing), got {v!r}")
        _check(self.channels in (None, 1, 3), f"image channels must be 1 or 3, got {self.channels!r}")
        _check(self.interpolation in (None, *INTERPOLATIONS),
               f"unknown interpolation {self.interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is None:
                continue
            try:
                v = tuple(float(a) for a in v)
            except (TypeError, ValueError):
                raise UserError(f"image {name} must be a sequence of numbers, got {v!r}") from None
            _check(len(v) in (1, 3) and all(math.isfinite(a) for a in v),
                   f"image {name} must be 1 or 3 finite numbers (one per channel), got {v!r}")
            _check(name == "mean" or all(a > 0 for a in v), f"image std must be positive, got {v!r}")
            _check(self.channels is None or len(v) == self.channels,
                   f"image {name} has {len(v)} value(s) but the images have {self.channels} channel(s); "
                   f"give one value per channel (--mean, --std) or say how many channels (--img-channels)")
            object.__setattr__(self, name, v)
        if self.mean is not None and self.std is not None:
            _check(len(self.mean) == len(self.std),
                   f"image mean has {len(self.mean)} values but std has {len(self.std)}")
        if self.size and self.resize is not None:
            _check(self.resize >= self.size, f"image resize ({self.resize}) must be at least the size "
                   f"({self.size}) it is cropped to")

    def over(self, default: ImageTransform) -> ImageTransform:
        """These settings, with the unset ones taken from ``default``. A size given here brings
        its own resize (``resize`` or ``size``), not the default's."""
        mine = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        if self.size is not None:
            mine.setdefault("resize", self.size)
        channels = mine.get("channels", default.channels)
        base = {}
        for name in ("mean", "std"):  # a 3-channel default for greyscale: the channels' average
            v = getattr(default, name)
            if name not in mine and v is not None and channels == 1 and len(v) == 3:
                base[name] = (sum(v) / 3,)
        return replace(default, **{**base, **mine})

    def resolved(self, default: ImageTransform) -> ImageTransform:
        """``over(default)``, checked to be complete and consistent (mean and std per channel)."""
        tf = self.over(default)
        missing = [f.name for f in fields(tf) if getattr(tf, f.name) is None]
        _check(not missing, f"the image transform lacks {', '.join(missing)}")
        _check(len(tf.mean) == tf.channels and len(tf.std) == tf.channels,
               f"image mean {tf.mean} and std {tf.std} must have one value per channel, and the images have "
               f"{tf.channels}; pass --mean and --std with {tf.channels} values, or --img-channels "
               f"{len(tf.mean)}")
        return tf

    def to_dict(self) -> dict[str, Any]:
        """As a file's identity records it (lists, JSON-ready)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def steps(self) -> list:
        """The torchvision transforms, ending in ``ToTensor`` + ``Normalize`` (complete settings only)."""
        from torchvision import transforms as T

        mode = T.InterpolationMode(self.interpolation)
        tf: list = [T.Resize(self.resize, interpolation=mode)] if self.resize else []
        tf += [T.CenterCrop(self.size)] if self.size else []
        tf += [T.Grayscale(1)] if self.channels == 1 else []
        return [*tf, T.ToTensor(), T.Normalize(list(self.mean), list(self.std))]


# ImageFolder trees without a model's configuration: as torchvision's ImageNet evaluation.
GENERIC = ImageTransform(size=224, resize=256, mean=IMAGENET_STATS[0], std=IMAGENET_STATS[1], channels=3,
                         interpolation="bilinear")
# What each built-in image dataset fixes itself: CIFAR its resolution and statistics; an
# ImageFolder tree only its (RGB) channels, the rest coming from the model or GENERIC.
CIFAR_DEFAULTS = {name: ImageTransform(size=0, resize=0, mean=m, std=s, channels=3, interpolation="bilinear")
                  for name, (m, s) in CIFAR_STATS.items()}
IMAGEFOLDER_DEFAULTS = ImageTransform(channels=3)


def timm_defaults(model: Any, arch_kwargs: dict[str, Any] | None = None) -> ImageTransform:
    """A timm model's evaluation transform from its pretrained configuration
    (``timm.data.resolve_data_config``: input size, ``crop_pct`` -> resize, mean, std,
    interpolation), as timm's own evaluation transform does; an ``img_size`` or ``in_chans``
    the model was built with (``arch_kwargs``) wins over its configuration."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    kwargs = arch_kwargs or {}
    size = kwargs.get("img_size") if isinstance(kwargs.get("img_size"), int) else int(cfg["input_size"][-1])
    channels = kwargs.get("in_chans") if kwargs.get("in_chans") in (1, 3) else 3
    interp = cfg.get("interpolation") if cfg.get("interpolation") in INTERPOLATIONS else "bilinear"
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if channels == 1 and len(mean) == 3:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return ImageTransform(size=size, resize=math.floor(size / float(cfg.get("crop_pct") or 1.0)),
                          mean=mean, std=std, channels=channels, interpolation=interp)


def load_cifar(
    name: str, split: str, root: str | os.PathLike | None, download: bool, train_transform: bool,
    image: ImageTransform | None = None,
) -> Dataset:
    """CIFAR-10 or CIFAR-100 (``name``) from torchvision's files under ``root``: (3, 32, 32) images
    (or as ``image`` says).

    Raises:
        UserError: no ``root``, or the files are not there (and ``download`` is off).
    """
    from torchvision import datasets
    from torchvision import transforms as T

    if root is None:
        raise UserError(
            f"{name} needs --data-root DIR (the folder holding the torchvision files); "
            "add --download to fetch them there"
        )
    tf = (image or ImageTransform()).resolved(CIFAR_DEFAULTS[name]).steps()
    if train_transform:
        tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *tf]
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=split == "train", transform=T.Compose(tf), download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise UserError(
            f"{name} not found under {root} ({exc}); pass the right --data-root, "
            "or add --download"
        ) from None


def imagefolder_classes(root: Path) -> list[str]:
    """The class folder names of an ImageFolder tree ``root/{train,test}/<class>/``, sorted.

    Raises:
        UserError: ``root`` is not a directory, or holds neither ``train/`` nor ``test/``.
    """
    if not root.is_dir():
        raise UserError(f"ImageFolder root {root} is not a directory")
    for split in SPLITS:
        if (root / split).is_dir():
            return sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    raise UserError(f"ImageFolder root {root} must hold train/ and test/ class folders")


def load_imagefolder(root: Path, split: str, train_transform: bool, image: ImageTransform | None = None) -> Dataset:
    """``root/<split>/`` as a torchvision ``ImageFolder``: by default at 224 px (resized to 256)
    with ImageNet normalisation (``GENERIC``), or as ``image`` says.

    Raises:
        UserError: a malformed tree (see ``imagefolder_classes``) or a missing split folder.
    """
    from torchvision import datasets
    from torchvision import transforms as T

    imagefolder_classes(root)
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"missing {folder}: an ImageFolder dataset needs {root}/{split}/<class>/")
    tf = (image or ImageTransform()).resolved(IMAGEFOLDER_DEFAULTS.over(GENERIC))
    steps = tf.steps()
    if train_transform:
        crop = [T.RandomResizedCrop(tf.size)] if tf.size else []
        steps = [*crop, T.RandomHorizontalFlip(), *steps[-3 if tf.channels == 1 else -2:]]
    return datasets.ImageFolder(str(folder), T.Compose(steps))

