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

Nothing computed is lost if the HDF5 file is damaged (a kill during a flush, a full disk, a
truncated copy): while a file is unfinished, ``<file>.init`` holds a copy of it as created and
``<file>.journal`` gets one JSON line per written group, appended and fsynced *before* the HDF5
write. ``recover`` rebuilds the file from the two. Both are removed once the file is finished
and has been read back complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape.errors import UserError
from landscape.grid.lock import WriterLock
from landscape.results import PathSet, PointInfo, Surface

FORMAT_VERSION = 1
METRICS = ("loss", "acc")


class GridStore:
    """An open results file over a grid of points (a plane's (G, G), or paths' (P, n)),
    created or resumed; write finished points with ``write``."""

    def __init__(self, file: h5py.File, lock: WriterLock | None = None) -> None:
        self.file = file
        self.lock = lock  # held while the file is open for writing
        self.path = Path(file.filename)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        kind: str,
        axes: dict[str, np.ndarray],
        shape: tuple[int, ...],
        splits: tuple[str, ...],
        config: dict[str, Any],
        extras: Callable[[h5py.File], None] = lambda f: None,
        overwrite: bool = False,
    ) -> "GridStore":
        """Create ``path``, or reopen it to resume when its kind and identity match.

        Raises:
            UserError: the file holds a different configuration (and ``overwrite`` is False),
                or is not a readable results file of this kind.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path).acquire()  # refuses while another process writes this file
        try:
            if path.exists() and not overwrite:
                return cls._resume(path, kind, config, lock)
            for stale in (journal_path(path), init_path(path)):
                stale.unlink(missing_ok=True)
            f = h5py.File(path, "w")
            _initialise(f, kind, axes, shape, splits, config)
            extras(f)
            f.close()
            _copy_synced(path, init_path(path))
            return cls(h5py.File(path, "r+"), lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _resume(cls, path: Path, kind: str, config: dict[str, Any], lock: WriterLock) -> "GridStore":
        try:
            store = cls(_open_existing(path, kind, "r"))
            store._check_identity(path, config["identity"])
            finished = store.file["done"][...].all()
        except UserError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # opens, but damaged
            raise _damaged(path, exc) from None
        if finished and not any(parts_dir(path).glob("part-*")):
            _drop_journal_if_finished(path)  # left behind if a run was killed as it closed
            lock.release()
            return store  # finished: read-only, the file is not touched
        store.close()
        store = cls(_open_existing(path, kind, "r+"), lock)
        store._update_runtime(config["runtime"])
        return store

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

    def missing(self) -> list[tuple[int, ...]]:
        """Indices of the points still to compute, in row-major order."""
        done = self.file["done"][...]
        return [tuple(int(v) for v in ji) for ji in np.argwhere(~done)]

    def write(self, index: list[tuple[int, ...]], metrics: dict[str, dict[str, np.ndarray]]) -> None:
        """Store finished points: first a journal line (fsynced), then the values, then the done
        mask, then flush. A failure (e.g. a full disk) leaves the points recoverable or absent,
        never half-marked as done."""
        _append_journal(self.path, {"index": [list(map(int, i)) for i in index],
                                    "metrics": {s: {m: [float(v) for v in values[m]] for m in METRICS}
                                                for s, values in metrics.items()}})
        try:
            _write_arrays(self.file, index, metrics)
        except (RuntimeError, KeyError, ValueError) as exc:  # h5py on a damaged file
            raise _damaged(self.path, exc) from None

    def close(self) -> None:
        writing = self.lock is not None and self.file.id.valid and self.file.mode == "r+"
        if self.file.id.valid:
            self.file.close()
        if writing:
            _drop_journal_if_finished(self.path)
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> "GridStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SurfaceStore(GridStore):
    """A plane's store: axes ``x``, ``y``; metrics (G, G); projected checkpoints in ``points``."""

    @classmethod
    def open(  # type: ignore[override]
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
        def write_points(f: h5py.File) -> None:
            for name, p in points.items():
                ds = f.create_dataset(f"points/{name}", data=np.array([p.x, p.y]))
                ds.attrs["residual"] = p.residual

        return super().open(path, kind="surface", axes={"x": x, "y": y},
                            shape=(len(y), len(x)), splits=splits, config=config,
                            extras=write_points, overwrite=overwrite)


class PathStore(GridStore):
    """Linear paths' store: axis ``alpha`` (n,); metrics (P, n) for P pairs of checkpoints
    listed in ``pairs`` (P, 2) as indices into the ``names`` attribute."""

    @classmethod
    def open(  # type: ignore[override]
        cls,
        path: str | os.PathLike,
        *,
        alpha: np.ndarray,
        pairs: list[tuple[int, int]],
        names: list[str],
        splits: tuple[str, ...],
        config: dict[str, Any],
        overwrite: bool = False,
    ) -> "PathStore":
        def write_pairs(f: h5py.File) -> None:
            f.create_dataset("pairs", data=np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
            f.attrs["names"] = json.dumps(names)

        return super().open(path, kind="paths", axes={"alpha": alpha},
                            shape=(len(pairs), len(alpha)), splits=splits, config=config,
                            extras=write_pairs, overwrite=overwrite)


def journal_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.journal")


def init_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.init")


def recover(path: str | os.PathLike) -> tuple[int, Path | None]:
    """Rebuild a damaged (or any unfinished) results file from its initial copy and journal.

    The damaged file is kept beside it as ``<file>.damaged-<time>``. Returns the number of
    finished points recovered and where the old file went (None if there was none).

    Raises:
        UserError: there is no journal to recover from, or another process writes the file.
    """
    path = Path(path)
    init, journal = init_path(path), journal_path(path)
    if path.is_file() and _opens(path):  # never trade a readable file for a rebuilt one
        state = "finished" if _readable(path) else "unfinished but readable"
        raise UserError(f"{path} is {state}: nothing to recover (rerun the command to finish it)")
    if not init.is_file():
        raise UserError(f"{path} has no recovery copy ({init.name}); it cannot be rebuilt: rerun "
                        "the command with --overwrite to compute it again")
    lock = WriterLock(path).acquire()
    tmp = path.with_name(f".{path.name}.recover-{os.getpid()}")
    try:
        shutil.copyfile(init, tmp)
        with h5py.File(tmp, "r+") as f:
            for r in _read_journal(journal):
                _write_arrays(f, [tuple(i) for i in r["index"]], r["metrics"])
            done = int(f["done"][...].sum())
        moved = None
        if path.exists():
            moved = _free_name(path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
            os.replace(path, moved)
        os.replace(tmp, path)
        return done, moved
    finally:
        tmp.unlink(missing_ok=True)
        lock.release()


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    return candidate


def parts_dir(path: str | os.PathLike) -> Path:
    """Where processes under torchrun leave finished groups for the main process to merge."""
    return Path(f"{path}.parts")


def _damaged(path: Path, exc: BaseException) -> UserError:
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if init_path(path).is_file():
        n = len(_read_journal(journal_path(path)))
        return UserError(f"{path} is damaged ({first}); `landscape recover {path}` rebuilds it from its "
                         f"journal ({n} finished groups), then rerun this command to finish it")
    return UserError(f"{path} exists but is not a readable results file ({first}); remove it or pass "
                     "--overwrite")


def _open_existing(path: Path, kind: str, mode: str) -> h5py.File:
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise _damaged(path, exc) from None
    if f.attrs.get("kind") != kind or "config" not in f.attrs:
        f.close()
        raise UserError(f"{path} is not a {kind} file of this toolkit; pass --overwrite")
    return f


def _write_arrays(f: h5py.File, index, metrics) -> None:
    for split, values in metrics.items():
        for name in METRICS:
            ds = f[f"metrics/{split}/{name}"]
            for idx, v in zip(index, values[name]):
                ds[idx] = v
    done = f["done"]
    for idx in index:
        done[idx] = True
    f.flush()


def _append_journal(path: Path, record: dict[str, Any]) -> None:
    journal = journal_path(path)
    if not init_path(path).is_file():
        return  # a file made before journals existed, or being recovered
    # the leading newline isolates a line that a kill cut short from this one
    line = memoryview(("\n" + json.dumps(record, separators=(",", ":")) + "\n").encode())
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while line:
            line = line[os.write(fd, line):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_journal(journal: Path) -> list[dict[str, Any]]:
    """Every complete line of the journal; a line cut short by a kill is ignored."""
    if not journal.is_file():
        return []
    records = []
    for line in journal.read_bytes().split(b"\n"):
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in records if isinstance(r, dict) and "index" in r and "metrics" in r]


def _copy_synced(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dst)


def _readable(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return bool(f["done"][...].all())
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return False


def _drop_journal_if_finished(path: Path) -> None:
    if _readable(path):  # .init first: a journal without .init is never used to rebuild
        init_path(path).unlink(missing_ok=True)
        journal_path(path).unlink(missing_ok=True)


def _opens(path: Path) -> bool:
    """The file opens and its done mask and metrics can be read."""
    try:
        with h5py.File(path, "r") as f:
            f["done"][...]
            for split in f["metrics"]:
                for name in METRICS:
                    f[f"metrics/{split}/{name}"][...]
        return True
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return False


def _initialise(f, kind, axes, shape, splits, config) -> None:
    f.attrs["kind"] = kind
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["config"] = json.dumps(config, sort_keys=True)
    for key, value in config["identity"].items():
        f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, type(None))) else value
    for name, values in axes.items():
        f.create_dataset(name, data=np.asarray(values, dtype=np.float64))
    for split in splits:
        for name in METRICS:
            f.create_dataset(f"metrics/{split}/{name}", data=np.full(shape, np.nan))
    f.create_dataset("done", data=np.zeros(shape, dtype=bool))


def _ordered_metrics(f: h5py.File, config: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Metrics by split in the order the configuration asked for (HDF5 sorts names)."""
    order = config.get("identity", {}).get("splits") or []
    splits = sorted(f["metrics"], key=lambda s: (order.index(s) if s in order else 99, s))
    return {split: {name: f[f"metrics/{split}/{name}"][...] for name in METRICS}
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
        points = {name: PointInfo(float(ds[0]), float(ds[1]), float(ds.attrs["residual"]))
                  for name, ds in f.get("points", {}).items()}
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
