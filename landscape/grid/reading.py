"""Reading results files: ``read_surface`` and ``read_paths`` (complete or partial files).

The layout is described in ``landscape.grid.store``. Anything malformed becomes one clean
``UserError``; a file that opens gives exactly the arrays and records stored in it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape.errors import UserError
from landscape.grid.journal import metric_names
from landscape.results import PathSet, PointInfo, Surface


def _ordered_metrics(f: h5py.File, config: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Metrics by split in the order the configuration asked for (HDF5 sorts names)."""
    order = config.get("identity", {}).get("splits") or []
    splits = sorted(f["metrics"], key=lambda s: (order.index(s) if s in order else 99, s))
    return {split: {name: f[f"metrics/{split}/{name}"][...] for name in metric_names(config)}
            for split in splits}


def _read(path: str | os.PathLike, kind: str, build: Callable[[h5py.File, dict, Path], Any]):
    """Open a results file of ``kind`` read-only and build its result object; anything
    malformed becomes one clean ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{kind} file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != kind:
                raise UserError(f"{path} is not a {kind} file of this toolkit")
            return build(f, json.loads(f.attrs["config"]), path)
    except UserError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
        # h5py raises RuntimeError for some damaged structures ("wrong B-tree signature")
        raise UserError(f"{path} is not a readable {kind} file ({exc})") from None


def read_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file (complete or partial) into a ``Surface``.

    Raises:
        UserError: the file is missing or not a surface file.
    """

    def build(f: h5py.File, config: dict, path: Path) -> Surface:
        points = {}  # a name such as run1/model is a dataset inside a group run1

        def add(name: str, ds) -> None:
            if isinstance(ds, h5py.Dataset):
                points[name] = PointInfo(float(ds[0]), float(ds[1]), float(ds.attrs["residual"]))

        if "points" in f:
            f["points"].visititems(add)
        return Surface(x=f["x"][...], y=f["y"][...], metrics=_ordered_metrics(f, config),
                       done=f["done"][...].astype(bool), points=points, config=config, path=path)

    return _read(path, "surface", build)


def read_paths(path: str | os.PathLike) -> PathSet:
    """Read a paths file (complete or partial) into a ``PathSet``.

    Raises:
        UserError: the file is missing or not a paths file.
    """

    def build(f: h5py.File, config: dict, path: Path) -> PathSet:
        return PathSet(alpha=f["alpha"][...],
                       pairs=[tuple(int(v) for v in p) for p in f["pairs"][...]],
                       names=json.loads(f.attrs["names"]), metrics=_ordered_metrics(f, config),
                       done=f["done"][...].astype(bool), config=config, path=path)

    return _read(path, "paths", build)
