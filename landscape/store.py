"""The HDF5 surface store: self-describing, written point by point, resumable.

Only this module touches HDF5. Layout (format version 1)::

    /x (G,)  /y (G,)                      grid axes
    /metrics/<split>/loss (G, G)          mean cross-entropy, NaN until computed
    /metrics/<split>/acc  (G, G)          accuracy in percent
    /done (G, G) bool                     which points are finished
    /points/<name> (2,)                   (x, y) of a projected checkpoint; attrs: residual
    attrs: format_version, kind ("surface"), config (JSON: identity + runtime), and the
           identity fields flattened for h5dump users (mode, bn, dataset, grid, ...)

The configuration has two parts: ``identity`` (everything that determines the numbers; a rerun
must match it to resume) and ``runtime`` (device, engine choice, versions; free to change).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape.errors import UserError
from landscape.results import PointInfo, Surface

FORMAT_VERSION = 1
METRICS = ("loss", "acc")


class SurfaceStore:
    """An open surface file, created or resumed; write finished points with ``write``."""

    def __init__(self, file: h5py.File) -> None:
        self.file = file

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        x: np.ndarray,
        y: np.ndarray,
        splits: tuple[str, ...],
        config: dict[str, Any],
        points: dict[str, PointInfo],
        overwrite: bool = False,
    ) -> "SurfaceStore":
        """Create ``path``, or reopen it to resume when its identity matches ``config``'s.

        Raises:
            UserError: the file holds a different configuration (and ``overwrite`` is False),
                or is not a readable surface file.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            store = cls(_open_existing(path))
            store._check_identity(path, config["identity"])
            store._update_runtime(config["runtime"])
            return store
        path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(path, "w")
        _initialise(f, x, y, splits, config, points)
        f.flush()
        return cls(f)

    def _check_identity(self, path: Path, identity: dict[str, Any]) -> None:
        stored = json.loads(self.file.attrs["config"])["identity"]
        if stored != identity:
            key = next(k for k in sorted(set(stored) | set(identity))
                       if stored.get(k) != identity.get(k))
            self.file.close()
            raise UserError(
                f"{path} was computed with a different configuration ({key}: "
                f"{stored.get(key)!r} there, {identity.get(key)!r} now); pass --overwrite to "
                "replace it, or choose another --out"
            )

    def _update_runtime(self, runtime: dict[str, Any]) -> None:
        config = json.loads(self.file.attrs["config"])
        previous = config["runtime"]
        config["runtime"] = {**runtime, **({"engine": previous["engine"]} if "engine" in previous else {})}
        self.file.attrs["config"] = json.dumps(config, sort_keys=True)

    # ------------------------------------------------------------------ access

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.file.attrs["config"])

    def set_runtime(self, key: str, value: Any) -> None:
        config = self.config
        config["runtime"][key] = value
        self.file.attrs["config"] = json.dumps(config, sort_keys=True)

    def missing(self) -> list[tuple[int, int]]:
        """(j, i) indices of the points still to compute, in row-major order."""
        done = self.file["done"][...]
        return [tuple(int(v) for v in ji) for ji in np.argwhere(~done)]

    def write(self, index: list[tuple[int, int]], metrics: dict[str, dict[str, np.ndarray]]) -> None:
        """Store finished points (values first, then the done mask) and flush to disk."""
        jj = np.array([j for j, _ in index])
        ii = np.array([i for _, i in index])
        for split, values in metrics.items():
            for name in METRICS:
                ds = self.file[f"metrics/{split}/{name}"]
                for j, i, v in zip(jj, ii, values[name]):
                    ds[j, i] = v
        done = self.file["done"]
        for j, i in zip(jj, ii):
            done[j, i] = True
        self.file.flush()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> "SurfaceStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_existing(path: Path) -> h5py.File:
    try:
        f = h5py.File(path, "r+")
    except OSError as exc:
        raise UserError(
            f"{path} exists but is not a readable HDF5 file ({exc}); remove it or pass --overwrite"
        ) from None
    if f.attrs.get("kind") != "surface" or "config" not in f.attrs:
        f.close()
        raise UserError(f"{path} is not a surface file of this toolkit; pass --overwrite")
    return f


def _initialise(f, x, y, splits, config, points) -> None:
    g = len(y), len(x)
    f.attrs["kind"] = "surface"
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["config"] = json.dumps(config, sort_keys=True)
    for key, value in config["identity"].items():
        f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, type(None))) else value
    f.create_dataset("x", data=np.asarray(x, dtype=np.float64))
    f.create_dataset("y", data=np.asarray(y, dtype=np.float64))
    for split in splits:
        for name in METRICS:
            f.create_dataset(f"metrics/{split}/{name}", data=np.full(g, np.nan))
    f.create_dataset("done", data=np.zeros(g, dtype=bool))
    for name, p in points.items():
        ds = f.create_dataset(f"points/{name}", data=np.array([p.x, p.y]))
        ds.attrs["residual"] = p.residual


def read_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file (complete or partial) into a ``Surface``.

    Raises:
        UserError: the file is missing or not a surface file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"surface file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != "surface":
                raise UserError(f"{path} is not a surface file of this toolkit")
            config = json.loads(f.attrs["config"])
            order = config.get("identity", {}).get("splits") or []
            splits = sorted(f["metrics"], key=lambda s: (order.index(s) if s in order else 99, s))
            metrics = {
                split: {name: f[f"metrics/{split}/{name}"][...] for name in METRICS}
                for split in splits
            }
            points = {
                name: PointInfo(float(ds[0]), float(ds[1]), float(ds.attrs["residual"]))
                for name, ds in f.get("points", {}).items()
            }
            return Surface(
                x=f["x"][...], y=f["y"][...], metrics=metrics, done=f["done"][...].astype(bool),
                points=points, config=config, path=path,
            )
    except (OSError, KeyError) as exc:
        raise UserError(f"{path} is not a readable surface file ({exc})") from None
