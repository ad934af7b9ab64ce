"""Dataset registry: the embedded MNIST-1D sets, CIFAR-10/100 and ImageFolder directories.

``load_dataset(name, split)`` returns a torch ``Dataset`` of ``(input, label)`` pairs with the
*evaluation* transform (``train_transform=True`` gives the training augmentation instead).
MNIST-1D is generated offline by the ``mnist1d`` package and cached as ``.npz`` on first use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from landscape.errors import UserError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the toolkit needs to know about a registered dataset."""

    name: str
    num_classes: int
    default_arch: str
    description: str


class ArrayDataset(Dataset):
    """Inputs and labels held as tensors; exposes them for resident (copy-free) evaluation."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        if len(inputs) != len(labels):
            raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.labels[i]


# MNIST-1D generation parameters. The target set is the package's standard one (4000 train,
# 1000 test); the source set for pre-training is larger and drawn with its own seed and a little
# more noise, so that fine-tuning on the target is transfer in miniature.
_MNIST1D_ARGS: dict[str, dict[str, Any]] = {
    "mnist1d": {"num_samples": 5000, "train_split": 0.8, "seed": 42},
    "mnist1d-source": {
        "num_samples": 40000,
        "train_split": 0.95,
        "seed": 1337,
        "corr_noise_scale": 0.3,
        "iid_noise_scale": 0.03,
        "shear_scale": 0.8,
    },
}

_INFO = {
    "mnist1d": DatasetInfo("mnist1d", 10, "mnist1d_cnn", "MNIST-1D, 4000 train / 1000 test (offline)"),
    "mnist1d-source": DatasetInfo(
        "mnist1d-source", 10, "mnist1d_cnn", "MNIST-1D source set for pre-training, 38000 / 2000"
    ),
    "cifar10": DatasetInfo("cifar10", 10, "resnet20", "CIFAR-10 (torchvision; --data-root)"),
    "cifar100": DatasetInfo("cifar100", 100, "resnet20", "CIFAR-100 (torchvision; --data-root)"),
}
IMAGEFOLDER_PREFIX = "imagefolder:"


def dataset_names() -> list[str]:
    """Registered names; ImageFolder directories are also accepted as ``imagefolder:PATH``."""
    return sorted(_INFO)


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for ``name`` (for ``imagefolder:PATH`` the classes are counted on disk)."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        root = Path(name[len(IMAGEFOLDER_PREFIX):])
        classes = _imagefolder_classes(root)
        return DatasetInfo(name, len(classes), "timm:resnet18", f"ImageFolder at {root}")
    if name not in _INFO:
        raise UserError(
            f"unknown dataset {name!r}; expected one of {', '.join(dataset_names())} "
            "or imagefolder:PATH"
        )
    return _INFO[name]


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = False,
    train_transform: bool = False,
) -> Dataset:
    """A torch Dataset of (input, label) pairs.

    Args:
        name: a registered name (see ``dataset_names()``) or ``imagefolder:PATH``.
        split: ``"train"`` or ``"test"``.
        root: where CIFAR lives (``--data-root``), or the cache for MNIST-1D
            (default ``$LANDSCAPE_CACHE`` or ``~/.cache/landscape``).
        download: let torchvision download CIFAR into ``root`` (never done otherwise).
        train_transform: the training augmentation instead of the evaluation transform.

    Raises:
        UserError: unknown dataset or split, missing root or files.

    Example:
        >>> ds = load_dataset("mnist1d", "test")
        >>> x, y = ds[0]   # x: (40,) float32, y: int64 scalar
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    info = dataset_info(name)
    if name in _MNIST1D_ARGS:
        return _mnist1d(name, split, root)
    if name.startswith(IMAGEFOLDER_PREFIX):
        return _imagefolder(Path(name[len(IMAGEFOLDER_PREFIX):]), split, train_transform)
    return _cifar(info, split, root, download, train_transform)


# ----------------------------------------------------------------------------- MNIST-1D


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get("LANDSCAPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "landscape"


def _mnist1d(name: str, split: str, root: str | os.PathLike | None) -> ArrayDataset:
    arrays = _mnist1d_arrays(name, cache_dir(root))
    xkey, ykey = ("x", "y") if split == "train" else ("x_test", "y_test")
    inputs = torch.from_numpy(arrays[xkey].astype(np.float32))
    labels = torch.from_numpy(arrays[ykey].astype(np.int64))
    return ArrayDataset(inputs, labels)


def _mnist1d_arrays(name: str, cache: Path) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url")
    args.update(_MNIST1D_ARGS[name])
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = cache / f"{name}-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            pass  # a corrupt cache file is regenerated below
    arrays = _generate_mnist1d(args)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def _generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # mnist1d seeds the global numpy and random generators: keep the caller's state intact.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


# ----------------------------------------------------------------------------- images

_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _cifar(
    info: DatasetInfo, split: str, root: Any, download: bool, train_transform: bool
) -> Dataset:
    from torchvision import datasets
    from torchvision import transforms as T

    if root is None:
        raise UserError(
            f"{info.name} needs --data-root DIR (the folder holding the torchvision files); "
            "add --download to fetch them there"
        )
    mean, std = _CIFAR_STATS[info.name]
    tf = [T.ToTensor(), T.Normalize(mean, std)]
    if train_transform:
        tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *tf]
    cls = datasets.CIFAR10 if info.name == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=split == "train", transform=T.Compose(tf), download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise UserError(
            f"{info.name} not found under {root} ({exc}); pass the right --data-root, "
            "or add --download"
        ) from None


def _imagefolder_classes(root: Path) -> list[str]:
    if not root.is_dir():
        raise UserError(f"ImageFolder root {root} is not a directory")
    for split in SPLITS:
        if (root / split).is_dir():
            return sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    raise UserError(f"ImageFolder root {root} must hold train/ and test/ class folders")


def _imagefolder(root: Path, split: str, train_transform: bool) -> Dataset:
    from torchvision import datasets
    from torchvision import transforms as T

    _imagefolder_classes(root)
    folder = root / split
    if not folder.is_dir():
        raise UserError(f"missing {folder}: an ImageFolder dataset needs {root}/{split}/<class>/")
    mean, std = _IMAGENET_STATS
    if train_transform:
        tf = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()]
    else:
        tf = [T.Resize(256), T.CenterCrop(224)]
    return datasets.ImageFolder(str(folder), T.Compose([*tf, T.ToTensor(), T.Normalize(mean, std)]))


# ----------------------------------------------------------------------------- resident tensors


def subset_indices(n: int, size: int | None, *, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` (all of them when size is None)."""
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise UserError(f"a subset size must be positive, got {size}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))


def as_tensors(
    dataset: Dataset, indices: np.ndarray | None = None, *, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and transform a dataset once into (inputs, labels) tensors, in index order."""
    if isinstance(dataset, ArrayDataset):
        if indices is None:
            return dataset.inputs, dataset.labels
        idx = torch.as_tensor(indices)
        return dataset.inputs[idx], dataset.labels[idx]
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, indices.tolist())
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys).long()


@dataclass(frozen=True)
class Resident:
    """A split held compactly for evaluation: ``inputs`` as stored (uint8 images for datasets
    whose transform ends in ``ToTensor`` + ``Normalize``, else the transformed floats), and
    ``decode``, which turns a batch of them into exactly what the dataset's transform gives."""

    inputs: torch.Tensor
    labels: torch.Tensor
    decode: "ImageDecode | None" = None


@dataclass(frozen=True)
class ImageDecode:
    """uint8 (B, C, H, W) -> float, bit-identical to the dataset's ``ToTensor`` + ``Normalize``
    on any device: each channel's 256 possible values are computed once on the CPU by those
    very transforms, and a batch is decoded by looking them up. (Computing on a GPU would not
    do: CUDA divides by a scalar as a multiplication by its reciprocal, one rounding off.)"""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x
        table = _decode_table(self.mean, self.std, x.device)  # (len(mean), 256)
        out = torch.empty_like(x, dtype=torch.float32)  # in x's memory format (channels-last too)
        for c in range(x.shape[1]):
            row = table[c if len(table) > 1 else 0]
            out[:, c] = row.index_select(0, x[:, c].flatten().int()).view(out[:, c].shape)
        return out


@functools.lru_cache(maxsize=16)
def _decode_table(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Every uint8 value of every channel through ``ToTensor`` + ``Normalize``, on the CPU."""
    from torchvision.transforms import functional as TF

    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).expand(len(mean), 1, 256)
    table = TF.normalize(values.to(torch.float32).div(255), list(mean), list(std))  # as ToTensor, Normalize
    return table.view(len(mean), 256).to(device)


def fits_on_device(nbytes: int, free_bytes: int, *, share: float = 0.5) -> bool:
    """Whether data of ``nbytes`` should be resident on a device with ``free_bytes`` free: at
    most ``share`` of it, so that the model, its activations and the engine's workers fit too."""
    return nbytes <= share * free_bytes


DATA_ON = ("auto", "device", "host")


def place(tensors: dict[str, tuple[torch.Tensor, torch.Tensor]], device: torch.device, *,
          copies: int = 1, where: str = "auto") -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], bool]:
    """Where the evaluation data of a GPU lives (``where``): ``device``, ``host`` memory (copied
    to the device batch by batch), or ``auto``: on the device when ``copies`` of it fit there
    (``fits_on_device``; the engine's channels-last conversion makes a second one for a moment),
    else on the host. On a CPU the host is the device. Returns the tensors and whether they
    stay on the host.

    Host data is not pinned: PyTorch's pinned allocator rounds each block up to a power of two
    and keeps it locked, which for data too large for a GPU could lock most of the host's memory.
    """
    if where not in DATA_ON:
        raise UserError(f"unknown data placement {where!r}; expected one of {', '.join(DATA_ON)}")
    if device.type == "cuda" and where != "device":
        need = copies * sum(x.nbytes + y.nbytes for x, y in tensors.values())
        if where == "host" or not fits_on_device(need, torch.cuda.mem_get_info(device)[0]):
            return tensors, True
    return {s: (x.to(device), y.to(device)) for s, (x, y) in tensors.items()}, False


def as_resident(dataset: Dataset, indices: np.ndarray | None = None, *, batch_size: int = 256) -> Resident:
    """Like ``as_tensors``, but images are kept as uint8 (a quarter of the memory) when the
    dataset's transform ends in ``ToTensor`` + ``Normalize``; ``Resident.decode`` restores them."""
    split = _uint8_transform(dataset)
    if split is None:
        return Resident(*as_tensors(dataset, indices, batch_size=batch_size))
    stored, decode = split
    original = dataset.transform
    try:
        dataset.transform = stored
        x, y = as_tensors(dataset, indices, batch_size=batch_size)
    finally:
        dataset.transform = original
    if x.dtype != torch.uint8:  # e.g. 16-bit images: ToTensor would not divide by 255
        return Resident(*as_tensors(dataset, indices, batch_size=batch_size))
    return Resident(x, y, decode)


def _uint8_transform(dataset: Dataset):
    """(the transform without ToTensor + Normalize, then PILToTensor; the decode) or None."""
    from torchvision import transforms as T

    tf = getattr(dataset, "transform", None)
    steps = list(getattr(tf, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], T.ToTensor) or not isinstance(steps[-1], T.Normalize):
        return None
    norm = steps[-1]
    mean, std = (tuple(float(v) for v in torch.as_tensor(a).flatten()) for a in (norm.mean, norm.std))
    return T.Compose([*steps[:-2], T.PILToTensor()]), ImageDecode(mean, std)


# ----------------------------------------------------------------------------- out of distribution

MNIST1D_C_CORRUPTIONS = ("gaussian_noise", "impulse_noise", "blur", "shift", "scale", "dropout",
                         "drift", "quantize")
CIFAR100_C_CORRUPTIONS = (
    "brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost",
    "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression",
    "motion_blur", "pixelate", "saturate", "shot_noise", "snow", "spatter", "speckle_noise",
    "zoom_blur",
)
SEVERITIES = (1, 2, 3, 4, 5)
OOD_PREFIX_CIFAR100C = "cifar100c:"


@dataclass(frozen=True)
class OodSet:
    """A corrupted test set: ``load(corruption, severity)`` gives (inputs, labels) tensors with
    the evaluation transform applied; severities are 1..5."""

    name: str
    corruptions: tuple[str, ...]
    num_classes: int
    root: Path | None = None

    def load(self, corruption: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
        if corruption not in self.corruptions:
            raise UserError(f"unknown corruption {corruption!r}; expected one of "
                            f"{', '.join(self.corruptions)}")
        if severity not in SEVERITIES:
            raise UserError(f"severity must be 1..5, got {severity}")
        if self.name == "mnist1d-c":
            return _mnist1d_c(corruption, severity, self.root)
        return _cifar100c(self.root, corruption, severity)


def ood_set(spec: str, root: str | os.PathLike | None = None) -> OodSet:
    """``mnist1d-c`` (generated offline from the MNIST-1D test split, cached) or
    ``cifar100c:ROOT`` (the CIFAR-100-C layout: ``<corruption>.npy`` with five severities of
    10 000 images each, plus ``labels.npy``).

    Raises:
        UserError: an unknown name, or a CIFAR-100-C folder without the expected files.
    """
    if spec == "mnist1d-c":
        return OodSet("mnist1d-c", MNIST1D_C_CORRUPTIONS, 10, Path(root) if root else None)
    if spec.startswith(OOD_PREFIX_CIFAR100C):
        folder = Path(spec[len(OOD_PREFIX_CIFAR100C):])
        missing = [c for c in ("labels", *CIFAR100_C_CORRUPTIONS)
                   if not (folder / f"{c}.npy").is_file()]
        if missing:
            raise UserError(f"{folder} is not a CIFAR-100-C folder: missing "
                            f"{', '.join(m + '.npy' for m in missing[:3])}"
                            + (" ..." if len(missing) > 3 else ""))
        return OodSet("cifar100c", CIFAR100_C_CORRUPTIONS, 100, folder)
    raise UserError(f"unknown OOD set {spec!r}; expected mnist1d-c or cifar100c:PATH")


def _cifar100c(folder: Path, corruption: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.load(folder / f"{corruption}.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    n = len(images) // len(SEVERITIES)
    rows = slice((severity - 1) * n, severity * n)
    mean, std = _CIFAR_STATS["cifar100"]
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x, torch.from_numpy(labels[rows].astype(np.int64))


def _mnist1d_c(corruption: str, severity: int, root) -> tuple[torch.Tensor, torch.Tensor]:
    test = _mnist1d("mnist1d", "test", root)
    x = test.inputs.numpy().astype(np.float64)
    rng = np.random.default_rng([MNIST1D_C_CORRUPTIONS.index(corruption), severity])
    out = _CORRUPT[corruption](x, severity - 1, rng)
    return torch.from_numpy(out.astype(np.float32)), test.labels


def _shift(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    k = (2, 4, 6, 8, 10)[s]
    out = np.zeros_like(x)
    signs = rng.choice([-1, 1], size=len(x))
    for i, sign in enumerate(signs):  # zero-padded translation by k positions
        out[i] = np.roll(x[i], sign * k)
        if sign > 0:
            out[i, :k] = 0.0
        else:
            out[i, -k:] = 0.0
    return out


def _dropout(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    k = (4, 8, 12, 16, 20)[s]
    out = x.copy()
    for i, start in enumerate(rng.integers(0, x.shape[1] - k + 1, size=len(x))):
        out[i, start : start + k] = 0.0
    return out


def _blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    k = (3, 5, 7, 9, 11)[s]
    kernel = np.ones(k) / k
    return np.stack([np.convolve(row, kernel, mode="same") for row in x])


def _impulse(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    p = (0.02, 0.05, 0.1, 0.15, 0.2)[s]
    mask = rng.random(x.shape) < p
    return np.where(mask, rng.choice([-3.0, 3.0], size=x.shape), x)


def _quantize(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    levels = (16, 8, 6, 4, 3)[s]
    lo, hi = x.min(), x.max()
    step = (hi - lo) / (levels - 1)
    return lo + np.round((x - lo) / step) * step


# Five severities each, mild to strong; every corruption keeps the labels.
_CORRUPT = {
    "gaussian_noise": lambda x, s, r: x + r.normal(0, (0.1, 0.2, 0.35, 0.5, 0.75)[s], x.shape),
    "impulse_noise": _impulse,
    "blur": _blur,
    "shift": _shift,
    "scale": lambda x, s, r: x * (0.8, 0.65, 0.5, 0.35, 0.2)[s],
    "dropout": _dropout,
    "drift": lambda x, s, r: x + np.outer(r.uniform(-1, 1, len(x)) * (0.25, 0.5, 1.0, 1.5, 2.0)[s],
                                          np.linspace(-1, 1, x.shape[1])),
    "quantize": _quantize,
}
