"""Part files: how processes under ``torchrun`` hand finished groups to the main process.

Every process claims the next unclaimed group (an atomically created claim file in
``<file>.parts/claims``), evaluates it and writes it as ``<file>.parts/part-<k>.npz``
(atomically); the main process, the only one that writes HDF5, merges parts into the results
file as they arrive and deletes them. Part files left by an interrupted run are merged when it
is rerun, so nothing finished is computed twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from landscape.atomic import atomic_path
from landscape.grid.store import GridStore

Index = tuple[int, ...]
Metrics = dict[str, dict[str, np.ndarray]]


def claim(path: Path) -> bool:
    """Create the claim file ``path``; False when another process created it first."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def write_part(path: Path, index: list[Index], metrics: Metrics) -> None:
    """Write a finished group (its point indices and metrics) as the part file ``path``."""
    arrays = {f"{split}/{name}": np.asarray(v) for split, m in metrics.items() for name, v in m.items()}
    with atomic_path(path) as tmp:
        np.savez(tmp, index=np.asarray(index, dtype=np.int64), **arrays)


def read_part(path: Path) -> tuple[list[Index], Metrics]:
    """A part file's point indices and metrics."""
    with np.load(path) as f:
        index = [tuple(int(v) for v in row) for row in f["index"]]
        metrics: Metrics = {}
        for key in f.files:
            if key != "index":
                split, name = key.split("/")
                metrics.setdefault(split, {})[name] = f[key]
    return index, metrics


def merge_parts(store: GridStore, parts: Path) -> int:
    """Write every finished part into the store, then delete it; returns the points merged."""
    merged = 0
    for part in sorted(parts.glob("part-*.npz")) if parts.is_dir() else []:
        index, metrics = read_part(part)
        store.write(index, metrics)
        part.unlink()
        merged += len(index)
    return merged
