"""Evaluation data held as tensors: seeded subsets, decoded-once splits, uint8 images, placement.

The engine evaluates many grid points on the same data, so each split is decoded and
transformed once (``as_tensors``), kept compactly (``as_resident``: uint8 images where the
transform allows, decoded bit-identically batch by batch by ``ImageDecode``) and placed on the
device when it fits (``place``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from landscape.errors import UserError

SPLITS = ("train", "test")
DATA_ON = ("auto", "device", "host")


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
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_same_shapes):
        if xs and x.shape[1:] != xs[0].shape[1:]:
            _differ({tuple(xs[0].shape[1:]), tuple(x.shape[1:])})
        xs.append(x)
        ys.append(torch.as_tensor(y))
    labels = torch.cat(ys)
    return torch.cat(xs), labels if labels.is_floating_point() else labels.long()  # regression targets stay floats


def _same_shapes(batch: list) -> object:
    """``default_collate``, with a one-line error for inputs of different shapes (images of
    several sizes left unresized)."""
    shapes = {tuple(getattr(item[0], "shape", ())) for item in batch}
    if len(shapes) > 1:
        _differ(shapes)
    return torch.utils.data.default_collate(batch)


def _differ(shapes: set) -> None:
    listed = ", ".join(str(s) for s in sorted(shapes)[:3])
    raise UserError(f"the inputs differ in shape ({listed}); evaluation needs one shape: resize the images "
                    "(--img-size N, or landscape.ImageTransform(size=N))")


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

