"""The embedded MNIST-1D datasets: generated offline by the ``mnist1d`` package, cached as ``.npz``.

The target set (``mnist1d``) is the package's standard one; the source set for pre-training
(``mnist1d-source``) is larger and drawn with its own seed and a little more noise, so that
fine-tuning on the target is transfer learning in miniature.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.assets.resident import ArrayDataset
from landscape.atomic import atomic_path

# The generation parameters over the package's defaults: 4000 train / 1000 test for the target,
# 38000 / 2000 for the source.
MNIST1D_ARGS: dict[str, dict[str, Any]] = {
    "mnist1d": {"num_samples": 5000, "train_split": 0.8, "seed": 42},
    "mnist1d-source": {
        "num_samples": 40000,
        "train_split": 0.95,
        "seed": 1337,
        "corr_noise_scale": 0.3,
        "iid_noise_scale": 0.03,
        "shear_scale": 0.8,
    },
    # The transfer target (#19): noisier and sheared more than the source, and small, so that
    # pre-training matters and a fine-tune is not saturated. 12000 samples drawn once, split by
    # TRANSFER_SPLITS into train, validation and test.
    "mnist1d-transfer": {
        "num_samples": 12000,
        "train_split": 0.5,
        "seed": 2024,
        "corr_noise_scale": 0.35,
        "iid_noise_scale": 0.05,
        "shear_scale": 1.0,
    },
}
# (start, stop) rows of the 12000 transfer samples: 1000 to train on, 1000 to choose settings on
# (``mnist1d-transfer-val``'s test split), 10000 to test on.
TRANSFER_SPLITS = {"train": (0, 1000), "val": (1000, 2000), "test": (2000, 12000)}


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Where generated data is cached: ``root``, else ``$LANDSCAPE_CACHE``, else ``~/.cache/landscape``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("LANDSCAPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "landscape"


def load_mnist1d(name: str, split: str, root: str | os.PathLike | None = None) -> ArrayDataset:
    """One split of ``mnist1d`` or ``mnist1d-source`` as tensors: inputs (N, 40) float32, labels (N,) int64.

    Args:
        name: a key of ``MNIST1D_ARGS``.
        split: ``"train"`` or ``"test"``.
        root: the cache folder (see ``cache_dir``).
    """
    if name.startswith("mnist1d-transfer"):
        return _transfer(split if not name.endswith("-val") or split == "train" else "val", root)
    arrays = _mnist1d_arrays(name, cache_dir(root))
    xkey, ykey = ("x", "y") if split == "train" else ("x_test", "y_test")
    inputs = torch.from_numpy(arrays[xkey].astype(np.float32))
    labels = torch.from_numpy(arrays[ykey].astype(np.int64))
    return ArrayDataset(inputs, labels)


def _transfer(part: str, root: str | os.PathLike | None) -> ArrayDataset:
    """Rows ``TRANSFER_SPLITS[part]`` of the transfer target's samples."""
    arrays = _mnist1d_arrays("mnist1d-transfer", cache_dir(root))
    x = np.concatenate([arrays["x"], arrays["x_test"]])
    y = np.concatenate([arrays["y"], arrays["y_test"]])
    start, stop = TRANSFER_SPLITS[part]
    return ArrayDataset(torch.from_numpy(x[start:stop].astype(np.float32)),
                        torch.from_numpy(y[start:stop].astype(np.int64)))


def _mnist1d_arrays(name: str, cache: Path) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url")
    args.update(MNIST1D_ARGS[name])
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = cache / f"{name}-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            pass  # a corrupt cache file is regenerated below
    arrays = _generate_mnist1d(args)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
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
