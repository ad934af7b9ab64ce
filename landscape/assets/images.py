"""Image datasets read from the user's disk: CIFAR-10/100 (torchvision files) and ImageFolder trees.

Nothing is downloaded unless asked (``download=True``). Each loader gives the evaluation
transform, or the training augmentation with ``train_transform=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from landscape.assets.resident import SPLITS
from landscape.errors import UserError

CIFAR_STATS = {  # (mean, std) per channel
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def load_cifar(
    name: str, split: str, root: str | os.PathLike | None, download: bool, train_transform: bool
) -> Dataset:
    """CIFAR-10 or CIFAR-100 (``name``) from torchvision's files under ``root``: (3, 32, 32) images.

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
    mean, std = CIFAR_STATS[name]
    tf = [T.ToTensor(), T.Normalize(mean, std)]
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


def load_imagefolder(root: Path, split: str, train_transform: bool) -> Dataset:
    """``root/<split>/`` as a torchvision ``ImageFolder`` at 224 px with ImageNet normalisation.

    Raises:
        UserError: a malformed tree (see ``imagefolder_classes``) or a missing split folder.
    """
    from torchvision import datasets
    from torchvision import transforms as T

    imagefolder_classes(root)
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"missing {folder}: an ImageFolder dataset needs {root}/{split}/<class>/")
    mean, std = IMAGENET_STATS
    if train_transform:
        tf = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()]
    else:
        tf = [T.Resize(256), T.CenterCrop(224)]
    return datasets.ImageFolder(str(folder), T.Compose([*tf, T.ToTensor(), T.Normalize(mean, std)]))
