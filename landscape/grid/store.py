"""The HDF5 surface store: self-describing, written point by point, resumable.

Only this module, ``journal`` and ``reading`` (in ``landscape.grid``) touch HDF5. Layout (format version 1)::

    /x (G,)  /y (G,)                      grid axes
    /metrics/<split>/loss (G, G)          mean cross-entropy, NaN until computed
    /metrics/<split>/acc  (G, G)          accuracy in percent
    /done (G, G) bool                     which points are finished
    /points/<name> (2,)                   (x, y) of a projected checkpoint; attrs: residual
    attrs: format_version, kind ("surface"), config (JSON: identity + runtime), and the
           identity fields flattened for h5dump users (mode, bn, dataset, grid, ...)

The configuration has two parts: ``identity`` (everything that determines the numbers; a rerun
must match it to resume) and ``runtime`` (device, engine choice, versions; free to change).

HDF5 never writes to the disk: a store holds its file in memory, and every change is written
out whole through ``landscape.atomic`` (a temporary file, fsync, rename). So a results file that
exists is always whole, even while it is being created or when a kill or a full disk interrupts a
write, and a failed write is a plain ``OSError`` (HDF5 cannot recover from a write that fails
under it: it leaves its file half closed, prints errors from finalizers and can crash at exit).
A new file, ``overwrite`` included, is written only once the run has started (``start``): until
then the old results stay as they were.

While a file is unfinished, its ``.init`` copy and ``.journal`` (``landscape.grid.journal``) keep
every written group recoverable; ``recover`` rebuilds a damaged file from them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape.atomic import temporaries, write_bytes
from landscape.errors import UserError
from landscape.grid.journal import (
    METRICS,
    append_journal,
    damaged_error,
    drop_journal_if_finished,
    file_image,
    init_path,
    journal_path,
    memory_file,
    metric_names,
    recover,
    write_arrays,
)
from landscape.grid.lock import WriterLock
from landscape.grid.reading import check_results, read_paths, read_surface
from landscape.results import PointInfo

__all__ = ["FORMAT_VERSION", "METRICS", "GridStore", "PathStore", "SurfaceStore", "init_path",
           "journal_path", "parts_dir", "read_paths", "read_surface", "recover"]

FORMAT_VERSION = 1


class GridStore:
    """An open results file over a grid of points (a plane's (G, G), or paths' (P, n)),
    created or resumed; write finished points with ``write``.

    ``file`` is the HDF5 file, in memory. ``new``: made by this run, on disk only from
    ``start`` on; part files of an earlier run never go into it.
    """

    def __init__(self, file: h5py.File, path: Path, lock: WriterLock | None = None, *,
                 written: bytes | None = None, new: bool = False) -> None:
        self.file, self.path, self.new = file, path, new
        self.lock = lock  # held while the file is open for writing
        self._written = written  # the bytes on disk (a new file: those start() writes); None: read-only
        self._pending = new  # a new file that start() has not yet written

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike, *, kind: str, axes: dict[str, np.ndarray], shape: tuple[int, ...],
             splits: tuple[str, ...], config: dict[str, Any],
             extras: Callable[[h5py.File], None] = lambda f: None, overwrite: bool = False) -> "GridStore":
        """Create ``path``, or reopen it to resume when its kind and identity match.

        A new file (with ``overwrite``, the replacement) is made in memory: nothing on disk
        changes until ``start`` (or the first ``write``). An empty file counts as absent.

        Raises:
            UserError: the file holds a different configuration (and ``overwrite`` is False),
                or is not a readable results file of this kind.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path).acquire()  # refuses while another process writes this file
        try:
            for left in (*temporaries(path), *temporaries(init_path(path))):
                left.unlink(missing_ok=True)  # a killed writer's: we hold the file's lock
            if path.exists() and not overwrite and not (path.is_file() and path.stat().st_size == 0):
                return cls._resume(path, kind, config, lock, shape)
            with memory_file(path) as f:
                _initialise(f, kind, axes, shape, splits, config)
                extras(f)
                created = file_image(f)
            return cls._in_memory(path, created, lock, new=True)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _in_memory(cls, path: Path, data: bytes, lock: WriterLock, *, new: bool = False) -> "GridStore":
        try:
            return cls(memory_file(path, data), path, lock, written=data, new=new)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise damaged_error(path, exc) from None

    @classmethod
    def _resume(cls, path: Path, kind: str, config: dict[str, Any], lock: WriterLock,
                shape: tuple[int, ...]) -> "GridStore":
        data = path.read_bytes()  # read once: a reader holding the file open never blocks us
        try:
            store = cls(_open_existing(data, path, kind), path)
            store._check_identity(path, config["identity"])
            check_results(store.file, path, kind, shape)  # every field, before any point is computed
            finished = store.file["done"][...].all()
        except UserError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # opens, but damaged
            raise damaged_error(path, exc) from None
        if finished and not any(parts_dir(path).glob("part-*")):
            drop_journal_if_finished(path)  # left behind if a run was killed as it closed
            lock.release()
            return store  # finished: read-only, the file is not touched
        store.close()
        store = cls._in_memory(path, data, lock)
        if not init_path(path).is_file():  # killed before its copy was made: journal from here on
            write_bytes(init_path(path), data)
        store._update_runtime(config["runtime"])
        return store

    def start(self) -> None:
        """Write a new file in place of the old results (file, journal, recovery copy, part
        files): called once the run is known to start (its inputs checked), so that a run that
        fails before leaves the old results as they were. A no-op for a resumed file."""
        if not self._pending:
            return
        for old in (init_path(self.path), journal_path(self.path)):  # .init first, as in drop_journal
            old.unlink(missing_ok=True)
        shutil.rmtree(parts_dir(self.path), ignore_errors=True)
        write_bytes(self.path, self._written)  # whole, or not at all
        write_bytes(init_path(self.path), self._written)
        self._pending = False

    def _save(self) -> None:
        """Write the file out whole (atomically) if it changed since it was last written."""
        self.start()
        data = file_image(self.file)
        if data != self._written:
            write_bytes(self.path, data)
            self._written = data

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
        self.file.attrs["config"] = json.dumps(config, sort_keys=True)  # written with the next change

    # ------------------------------------------------------------------ access

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.file.attrs["config"])

    def set_runtime(self, key: str, value: Any) -> None:
        config = self.config
        config["runtime"][key] = value
        self.file.attrs["config"] = json.dumps(config, sort_keys=True)
        self._save()

    def missing(self) -> list[tuple[int, ...]]:
        """Indices of the points still to compute, in row-major order."""
        done = self.file["done"][...]
        return [tuple(int(v) for v in ji) for ji in np.argwhere(~done)]

    def write(self, index: list[tuple[int, ...]], metrics: dict[str, dict[str, np.ndarray]]) -> None:
        """Store finished points: first a journal line (fsynced), then the values, then the done
        mask, then the file is written out whole. A failure (e.g. a full disk) leaves the points
        recoverable or absent, never half-marked as done."""
        self.start()  # a new file is on disk before its journal gets a line
        append_journal(self.path, {"index": [list(map(int, i)) for i in index],
                                    "metrics": {s: {m: [float(v) for v in values[m]] for m in values}
                                                for s, values in metrics.items()}})
        try:
            write_arrays(self.file, index, metrics)
        except (RuntimeError, KeyError, ValueError) as exc:  # h5py on a damaged file
            raise damaged_error(self.path, exc) from None
        self._save()

    def close(self) -> None:
        """Write what changed (never a new file that has not started), drop the journal if the
        file is finished, close it and release the lock."""
        try:
            if self.file.id.valid and self._written is not None and not self._pending:
                self._save()
                drop_journal_if_finished(self.path)
        finally:
            self._written = None
            if self.file.id.valid:
                self.file.close()
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> "GridStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SurfaceStore(GridStore):
    """A plane's store: axes ``x``, ``y``; metrics (G, G); projected checkpoints in ``points``."""

    @classmethod
    def open(cls, path: str | os.PathLike, *, x: np.ndarray, y: np.ndarray,  # type: ignore[override]
             splits: tuple[str, ...], config: dict[str, Any], points: dict[str, PointInfo],
             overwrite: bool = False, skip: np.ndarray | None = None) -> "SurfaceStore":
        """``skip``: a (G, G) mask of points that are never computed (marked done, left NaN at
        creation: a simplex's points outside its triangle)."""
        def write_points(f: h5py.File) -> None:
            for name, p in points.items():
                ds = f.create_dataset(f"points/{name}", data=np.array([p.x, p.y]))
                ds.attrs["residual"] = p.residual
            if skip is not None:
                f["done"][...] = skip

        return super().open(path, kind="surface", axes={"x": x, "y": y},
                            shape=(len(y), len(x)), splits=splits, config=config,
                            extras=write_points, overwrite=overwrite)


class PathStore(GridStore):
    """Linear paths' store: axis ``alpha`` (n,); metrics (P, n) for P pairs of checkpoints
    listed in ``pairs`` (P, 2) as indices into the ``names`` attribute."""

    @classmethod
    def open(cls, path: str | os.PathLike, *, alpha: np.ndarray,  # type: ignore[override]
             pairs: list[tuple[int, int]], names: list[str], splits: tuple[str, ...], config: dict[str, Any],
             overwrite: bool = False) -> "PathStore":
        def write_pairs(f: h5py.File) -> None:
            f.create_dataset("pairs", data=np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
            f.attrs["names"] = json.dumps(names)

        return super().open(path, kind="paths", axes={"alpha": alpha},
                            shape=(len(pairs), len(alpha)), splits=splits, config=config,
                            extras=write_pairs, overwrite=overwrite)


def parts_dir(path: str | os.PathLike) -> Path:
    """Where processes under torchrun leave finished groups for the main process to merge."""
    return Path(f"{path}.parts")


def _open_existing(data: bytes, path: Path, kind: str) -> h5py.File:
    """The results file ``path`` (its bytes ``data``) opened read-only, checked to be of ``kind``."""
    try:
        f = memory_file(path, data, writable=False)
    except OSError as exc:
        raise damaged_error(path, exc) from None
    if f.attrs.get("kind") != kind or "config" not in f.attrs:
        f.close()
        raise UserError(f"{path} is not a {kind} file of this toolkit; pass --overwrite")
    return f


def _initialise(f, kind, axes, shape, splits, config) -> None:
    f.attrs["kind"] = kind
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["config"] = json.dumps(config, sort_keys=True)
    for key, value in config["identity"].items():
        f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, type(None))) else value
    for name, values in axes.items():
        f.create_dataset(name, data=np.asarray(values, dtype=np.float64))
    for split in splits:
        for name in metric_names(config):
            f.create_dataset(f"metrics/{split}/{name}", data=np.full(shape, np.nan))
    f.create_dataset("done", data=np.zeros(shape, dtype=bool))
