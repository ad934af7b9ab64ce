"""Out-of-distribution test sets: MNIST-1D-C (generated offline) and CIFAR-100-C (from disk).

``ood_set(spec)`` names the set; ``OodSet.load(corruption, severity)`` gives its corrupted test
split as (inputs, labels) tensors with the evaluation transform applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from landscape.assets.images import CIFAR_STATS
from landscape.assets.mnist1d import load_mnist1d
from landscape.errors import UserError

MNIST1D_C_CORRUPTIONS = ("gaussian_noise", "impulse_noise", "blur", "shift", "scale", "dropout",
                         "drift", "quantize")
CIFAR100_C_CORRUPTIONS = (
    "brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost",
    "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression",
    "motion_blur", "pixelate", "saturate", "shot_noise", "snow", "spatter", "speckle_noise",
    "zoom_blur",
)
SEVERITIES = (1, 2, 3, 4, 5)
MNIST1D_C_BASES = {"mnist1d-c": "mnist1d", "mnist1d-transfer-c": "mnist1d-transfer"}  # OOD set -> its test split
# the test rows each corrupted set is made of (None: all): 2000 of the transfer target's 10 000 keep
# its 40 sets (8 corruptions, 5 severities) at 80 000 samples, the cost of judging a model on them
MNIST1D_C_ROWS = {"mnist1d-c": None, "mnist1d-transfer-c": 2000}
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
        if self.name in MNIST1D_C_BASES:
            return _mnist1d_c(self.name, corruption, severity, self.root)
        return _cifar100c(self.root, corruption, severity)


def ood_set(spec: str, root: str | os.PathLike | None = None) -> OodSet:
    """``mnist1d-c`` or ``mnist1d-transfer-c`` (generated offline from the test split of
    ``mnist1d``, or the first 2000 test samples of ``mnist1d-transfer``) or
    ``cifar100c:ROOT`` (the CIFAR-100-C layout: ``<corruption>.npy`` with five severities of
    10 000 images each, plus ``labels.npy``).

    Raises:
        UserError: an unknown name, or a CIFAR-100-C folder without the expected files.
    """
    if spec in MNIST1D_C_BASES:
        return OodSet(spec, MNIST1D_C_CORRUPTIONS, 10, Path(root) if root else None)
    if spec.startswith(OOD_PREFIX_CIFAR100C):
        folder = Path(spec[len(OOD_PREFIX_CIFAR100C):])
        missing = [c for c in ("labels", *CIFAR100_C_CORRUPTIONS)
                   if not (folder / f"{c}.npy").is_file()]
        if missing:
            raise UserError(f"{folder} is not a CIFAR-100-C folder: missing "
                            f"{', '.join(m + '.npy' for m in missing[:3])}"
                            + (" ..." if len(missing) > 3 else ""))
        return OodSet("cifar100c", CIFAR100_C_CORRUPTIONS, 100, folder)
    raise UserError(f"unknown OOD set {spec!r}; expected mnist1d-c, mnist1d-transfer-c or cifar100c:PATH")


def _cifar100c(folder: Path, corruption: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.load(folder / f"{corruption}.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy")
    n = len(images) // len(SEVERITIES)
    rows = slice((severity - 1) * n, severity * n)
    mean, std = CIFAR_STATS["cifar100"]
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x, torch.from_numpy(labels[rows].astype(np.int64))


def _mnist1d_c(name: str, corruption: str, severity: int, root) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_mnist1d(MNIST1D_C_BASES[name], "test", root)
    rows = MNIST1D_C_ROWS[name] or len(test)
    x = test.inputs[:rows].numpy().astype(np.float64)
    rng = np.random.default_rng([MNIST1D_C_CORRUPTIONS.index(corruption), severity])
    out = _CORRUPT[corruption](x, severity - 1, rng)
    return torch.from_numpy(out.astype(np.float32)), test.labels[:rows]


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
