"""Reading results files: ``read_surface``, ``read_paths``, ``read_results`` (complete or partial).

The layout is described in ``landscape.grid.store``. Every dataset and attribute is checked
before use: present, of the dtype the store writes, of a shape that fits the axes, with the
splits its configuration names. Anything else is one ``UserError`` naming the file and the field;
a file that passes gives exactly the arrays and records stored in it.

A file that a running process is writing reads like any other: the store writes it out whole
after every group (``landscape.grid.store``), so it is never half-way through a write, and a
reader sees every group written so far. Files are opened without HDF5's own file locks
(``open_h5``): the writer lock keeps writers apart, and HDF5's locks would let another program
that holds a file open (``h5py.File(path, "r+")``) stop every reader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape.errors import UserError, first_line
from landscape.grid.journal import init_path, metric_names
from landscape.results import PathSet, PointInfo, Surface

FLOAT64, BOOL, INT64 = np.dtype("<f8"), np.dtype(bool), np.dtype("<i8")
# what h5py raises on damaged structures ("wrong B-tree signature" is a RuntimeError)
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError)


def _hdf5_lock_option() -> dict[str, Any]:
    version = h5py.version.hdf5_version_tuple  # HDF5 takes ``locking`` from 1.12.1 and 1.10.7
    return {"locking": False} if version >= (1, 12, 1) or (1, 10, 7) <= version < (1, 11) else {}


NO_HDF5_LOCKS = _hdf5_lock_option()


def open_h5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """``h5py.File(path, mode)`` without HDF5's file locks (see the module docstring)."""
    return h5py.File(path, mode, **NO_HDF5_LOCKS)


def read_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file (complete or partial) into a ``Surface``.

    Raises:
        UserError: the file is missing, not a surface file, or damaged (the field named).
    """
    return _read(Path(path), ("surface",))


def read_paths(path: str | os.PathLike) -> PathSet:
    """Read a paths file (complete or partial) into a ``PathSet``.

    Raises:
        UserError: the file is missing, not a paths file, or damaged (the field named).
    """
    return _read(Path(path), ("paths",))


def read_results(path: str | os.PathLike) -> Surface | PathSet:
    """Read a surface or a paths file, whichever ``path`` holds."""
    return _read(Path(path), ("surface", "paths"))


def check_results(f: h5py.File, path: Path, kind: str, shape: tuple[int, ...] | None = None) -> Surface | PathSet:
    """The result held by the open file ``f`` (of ``kind``, with a done mask of ``shape`` if
    given): what a writer resuming ``f`` checks first.

    Raises:
        UserError: a field is missing or does not fit, named.
    """
    result = _build(f, path, (kind,))
    if shape is not None and result.done.shape != tuple(shape):
        raise Fields(f, path).damaged(f"dataset done has shape {result.done.shape}, this run's is {tuple(shape)}")
    return result


def _read(path: Path, kinds: tuple[str, ...]) -> Surface | PathSet:
    if not path.is_file():
        raise UserError(f"{' or '.join(kinds)} file {path} does not exist")
    try:
        with open_h5(path) as f:
            return _build(f, path, kinds)
    except UserError:
        raise
    except H5_ERRORS as exc:
        raise UserError(f"{path} is not a readable {' or '.join(kinds)} file ({first_line(exc)})") from None


def _build(f: h5py.File, path: Path, kinds: tuple[str, ...]) -> Surface | PathSet:
    """The result in the open file ``f`` (of ``path``), every field checked."""
    kind = f.attrs.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise UserError(f"{path} is not a {' or '.join(kinds)} file of this toolkit")
    fields = Fields(f, path)
    config = fields.config()
    return _surface(fields, config, path) if kind == "surface" else _paths(fields, config, path)


def _surface(fields: "Fields", config: dict[str, Any], path: Path) -> Surface:
    x, y = fields.axis("x"), fields.axis("y")
    grid = config.get("identity", {}).get("grid")
    if type(grid) is int and (x.size, y.size) != (grid, grid):
        raise fields.damaged(f"datasets x and y have {x.size} and {y.size} points where its configuration's "
                             f"grid has {grid}")
    shape = (y.size, x.size)
    return Surface(x=x, y=y, metrics=fields.metrics(config, shape), done=fields.array("done", BOOL, shape),
                   points=fields.points(), config=config, path=path)


def _paths(fields: "Fields", config: dict[str, Any], path: Path) -> PathSet:
    alpha = fields.axis("alpha")
    names = fields.json_attr("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise fields.damaged("attribute names is not a JSON list of checkpoint names")
    pairs = fields.array("pairs", INT64, (None, 2))
    if ((pairs < 0) | (pairs >= len(names))).any():
        raise fields.damaged(f"dataset pairs holds indices outside the {len(names)} names")
    shape = (len(pairs), alpha.size)
    return PathSet(alpha=alpha, pairs=[(int(a), int(b)) for a, b in pairs], names=names,
                   metrics=fields.metrics(config, shape), done=fields.array("done", BOOL, shape),
                   config=config, path=path)


class Fields:
    """Checked access to an open results file: every dataset and attribute is what the store
    writes, or a ``UserError`` names the file and the field."""

    def __init__(self, f: h5py.File, where: Path) -> None:
        self.f, self.where = f, where

    def damaged(self, what: str) -> UserError:
        advice = (f"`landscape recover {self.where}` rebuilds it from its journal" if init_path(self.where).is_file()
                  else "compute it again with --overwrite")
        return UserError(f"{self.where} is damaged: {what}; {advice}")

    def array(self, name: str, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
        """Dataset ``name``: of ``dtype`` and ``shape`` (None: any length on that axis)."""
        ds = self.f.get(name)
        if not isinstance(ds, h5py.Dataset):
            raise self.damaged(f"dataset {name} is missing")
        if ds.dtype != dtype:
            raise self.damaged(f"dataset {name} holds {ds.dtype}, expected {dtype}")
        if len(ds.shape) != len(shape) or any(n is not None and n != m for n, m in zip(shape, ds.shape)):
            expected = ", ".join("any" if n is None else str(n) for n in shape)
            raise self.damaged(f"dataset {name} has shape {ds.shape}, expected ({expected}{',' * (len(shape) == 1)})")
        return ds[...]

    def axis(self, name: str) -> np.ndarray:
        values = self.array(name, FLOAT64, (None,))
        if not values.size or not np.isfinite(values).all() or (np.diff(values) <= 0).any():
            raise self.damaged(f"dataset {name} does not hold increasing finite numbers")
        return values

    def json_attr(self, name: str) -> Any:
        text = self.f.attrs.get(name)
        if text is None:
            raise self.damaged(f"attribute {name} is missing")
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            raise self.damaged(f"attribute {name} is not JSON") from None

    def config(self) -> dict[str, Any]:
        config = self.json_attr("config")
        parts = ("identity", "runtime")
        if not isinstance(config, dict) or not all(isinstance(config.get(k, {}), dict) for k in parts):
            raise self.damaged("attribute config is not a configuration (a JSON object of identity and runtime)")
        identity = config.get("identity", {})
        for key in ("splits", "metrics"):
            value = identity.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
                raise self.damaged(f"config identity.{key} is not a list of names")
        return config

    def metrics(self, config: dict[str, Any], shape: tuple[int, ...]) -> dict[str, dict[str, np.ndarray]]:
        """Metrics by split, in the order the configuration names them (HDF5 sorts names)."""
        group = self.f.get("metrics")
        if not isinstance(group, h5py.Group):
            raise self.damaged("group metrics is missing")
        order = config.get("identity", {}).get("splits") or []
        for split in order:
            if not isinstance(group.get(split), h5py.Group):
                raise self.damaged(f"split {split} is missing (group metrics/{split})")
        splits = sorted(group, key=lambda s: (order.index(s) if s in order else len(order), s))
        if not splits:
            raise self.damaged("group metrics holds no split")
        return {split: {name: self.array(f"metrics/{split}/{name}", FLOAT64, shape) for name in metric_names(config)}
                for split in splits}

    def points(self) -> dict[str, PointInfo]:
        """The projected checkpoints; a name such as run1/model is a dataset inside a group run1."""
        group = self.f.get("points")
        if group is None:
            return {}
        if not isinstance(group, h5py.Group):
            raise self.damaged("points is not a group")
        names: list[str] = []
        group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        points = {}
        for name in names:
            xy = self.array(f"points/{name}", FLOAT64, (2,))
            residual = self.f[f"points/{name}"].attrs.get("residual")
            number = np.asarray(residual)
            if not (number.dtype.kind == "f" and number.ndim == 0 and np.isfinite(number) and np.isfinite(xy).all()):
                raise self.damaged(f"dataset points/{name} or its attribute residual is not finite numbers")
            points[name] = PointInfo(float(xy[0]), float(xy[1]), float(residual))
        return points
