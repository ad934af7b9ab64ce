"""Nothing computed is lost: a results file's recovery copy and journal, and ``recover``.

Nothing computed is lost if the HDF5 file is damaged (a kill during a flush, a full disk, a
truncated copy): while a file is unfinished, ``<file>.init`` holds a copy of it as created and
``<file>.journal`` gets one JSON line per written group, appended and fsynced *before* the HDF5
write. ``recover`` rebuilds the file from the two. Both are removed once the file is finished
and has been read back complete.

A journal line is ``{"index": [[j, i], ...], "metrics": {split: {"loss": [...], "acc": [...]}}}``,
written with a leading newline so that a line a kill cut short never swallows the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import h5py

from landscape.atomic import atomic_path
from landscape.errors import UserError
from landscape.grid.lock import WriterLock

METRICS = ("loss", "acc")  # a file's metrics unless its identity names others ("metrics")


def metric_names(config: dict[str, Any]) -> tuple[str, ...]:
    """The metrics a results file holds, from its configuration."""
    return tuple(config.get("identity", {}).get("metrics") or METRICS)


def journal_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.journal")


def init_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.init")


def append_journal(path: Path, record: dict[str, Any]) -> None:
    """Append one group's record to the journal of results file ``path`` and fsync it (a no-op
    while the file has no ``.init`` copy: made before journals existed, or being recovered)."""
    journal = journal_path(path)
    if not init_path(path).is_file():
        return
    # the leading newline isolates a line that a kill cut short from this one
    line = memoryview(("\n" + json.dumps(record, separators=(",", ":")) + "\n").encode())
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while line:
            line = line[os.write(fd, line):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(journal: Path) -> list[dict[str, Any]]:
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


def copy_synced(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically and durably (the ``.init`` copy of a new file)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_arrays(f: h5py.File, index, metrics) -> None:
    """Write one group's values into an open results file, then its done mask, then flush."""
    for split, values in metrics.items():
        for name in values:
            ds = f[f"metrics/{split}/{name}"]
            for idx, v in zip(index, values[name]):
                ds[idx] = v
    done = f["done"]
    for idx in index:
        done[idx] = True
    f.flush()


def is_finished(path: Path) -> bool:
    """The file opens and its done mask says every point is finished."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f["done"][...].all())
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return False


def drop_journal_if_finished(path: Path) -> None:
    if is_finished(path):  # .init first: a journal without .init is never used to rebuild
        init_path(path).unlink(missing_ok=True)
        journal_path(path).unlink(missing_ok=True)


def opens(path: Path) -> bool:
    """The file opens and its done mask and metrics can be read."""
    try:
        with h5py.File(path, "r") as f:
            f["done"][...]
            names = metric_names(json.loads(f.attrs["config"]))
            for split in f["metrics"]:
                for name in names:
                    f[f"metrics/{split}/{name}"][...]
        return True
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return False


def damaged_error(path: Path, exc: BaseException) -> UserError:
    """The one-line error for a results file that h5py cannot read: how to recover it if it has
    a journal, or how to replace it."""
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if init_path(path).is_file():
        n = len(read_journal(journal_path(path)))
        return UserError(f"{path} is damaged ({first}); `landscape recover {path}` rebuilds it from its "
                         f"journal ({n} finished groups), then rerun this command to finish it")
    return UserError(f"{path} exists but is not a readable results file ({first}); remove it or pass "
                     "--overwrite")


def recover(path: str | os.PathLike) -> tuple[int, Path | None]:
    """Rebuild a damaged (or any unfinished) results file from its initial copy and journal.

    The damaged file is kept beside it as ``<file>.damaged-<time>``. Returns the number of
    finished points recovered and where the old file went (None if there was none).

    Raises:
        UserError: there is no journal to recover from, or another process writes the file.
    """
    path = Path(path)
    init, journal = init_path(path), journal_path(path)
    if path.is_file() and opens(path):  # never trade a readable file for a rebuilt one
        state = "finished" if is_finished(path) else "unfinished but readable"
        raise UserError(f"{path} is {state}: nothing to recover (rerun the command to finish it)")
    if not init.is_file():
        raise UserError(f"{path} has no recovery copy ({init.name}); it cannot be rebuilt: rerun "
                        "the command with --overwrite to compute it again")
    lock = WriterLock(path).acquire()
    try:
        with atomic_path(path) as tmp:  # replaces the damaged file once the rebuilt one is on disk
            shutil.copyfile(init, tmp)
            with h5py.File(tmp, "r+") as f:
                for r in read_journal(journal):
                    write_arrays(f, [tuple(i) for i in r["index"]], r["metrics"])
                done = int(f["done"][...].sum())
            moved = None
            if path.exists():
                moved = _free_name(path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
                os.replace(path, moved)
        return done, moved
    finally:
        lock.release()


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    return candidate
