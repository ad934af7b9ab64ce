"""Nothing computed is lost: a results file's recovery copy and journal, and ``recover``.

The store writes a results file whole and atomically (``landscape.grid.store``), so a kill or a
full disk never damages it; the journal is for what else can (a bad disk, a truncated copy, a
file of an older version): while a file is unfinished, ``<file>.init`` holds a copy of it as
created (or as a resumed run found it without one) and ``<file>.journal`` gets one JSON line per
written group, appended and fsynced *before* the file is written. ``recover`` rebuilds the file
from the two, in memory, refusing a journal line that does not fit the file with one line that
names it. Both are removed once the file is finished and has been read back complete.

A journal line is ``{"index": [[j, i], ...], "metrics": {split: {"loss": [...], "acc": [...]}}}``,
written with a leading newline so that a line a kill cut short never swallows the next one.
"""

from __future__ import annotations

import itertools
import json
import os
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


def memory_file(path: Path, data: bytes | None = None, *, writable: bool = True) -> h5py.File:
    """The results file ``path`` held in memory: new (``data`` None) or opened from its bytes
    ``data``. HDF5 lays it out as it would on disk (h5py's settings, the same bytes) but never
    reads or writes the disk; ``file_image`` gives the bytes to write out."""
    # a name never on disk, and unique: HDF5 takes two open files of one name for one file
    name = f"{path}.in-memory/{os.getpid()}-{next(_opened)}"
    if data is None:
        return h5py.File(name, "w", driver="core", backing_store=False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)  # h5py.File's default
    fapl.set_fapl_core(backing_store=False)
    fapl.set_file_image(data)
    mode = h5py.h5f.ACC_RDWR if writable else h5py.h5f.ACC_RDONLY
    return h5py.File(h5py.h5f.open(name.encode(), mode, fapl=fapl))


def file_image(f: h5py.File) -> bytes:
    """The bytes of the open in-memory file ``f``, as a file on disk would hold them."""
    f.flush()
    return f.id.get_file_image()


_opened = itertools.count()


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
    except OSError as exc:  # a full disk: say where (a line cut short is skipped when read)
        raise OSError(exc.errno, exc.strerror, str(journal)) from exc
    finally:
        os.close(fd)


def read_journal(journal: Path) -> list[dict[str, Any]]:
    """Every complete line of the journal; a line cut short by a kill is ignored."""
    return [record for _, record in journal_lines(journal)]


def journal_lines(journal: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every complete line of the journal with its line number (from 1); a line cut short by a
    kill is ignored."""
    if not journal.is_file():
        return []
    records = []
    for number, line in enumerate(journal.read_bytes().split(b"\n"), 1):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "index" in record and "metrics" in record:
            records.append((number, record))
    return records


def check_record(f: h5py.File, record: dict[str, Any], where: str) -> None:
    """Refuse a journal record that does not fit the file ``f`` (``where``: the journal and
    line, for the message): points inside the grid, and for each split and metric of the file
    that it names, one number per point."""
    shape = f["done"].shape
    index = record["index"]
    if not (isinstance(index, list) and all(
            isinstance(i, list) and len(i) == len(shape)
            and all(type(v) is int and 0 <= v < n for v, n in zip(i, shape)) for i in index)):
        raise UserError(f"{where}: index {_short(index)} is not a list of points inside the "
                        f"{'x'.join(map(str, shape))} grid; {_FIX}")
    known = {(split, name) for split in f["metrics"] for name in f["metrics"][split]}  # HDF5's names
    metrics = record["metrics"]
    if not (isinstance(metrics, dict) and all(isinstance(m, dict) for m in metrics.values())):
        raise UserError(f"{where}: metrics {_short(metrics)} is not split -> metric -> numbers; {_FIX}")
    for split, values in metrics.items():
        for name, numbers in values.items():
            if (split, name) not in known:
                raise UserError(f"{where}: the file has no metric {split!r}/{name!r}; {_FIX}")
            if not (isinstance(numbers, list) and all(type(v) in (int, float) for v in numbers)):
                raise UserError(f"{where}: {split!r}/{name!r} is not a list of numbers; {_FIX}")
            if len(numbers) != len(index):
                raise UserError(f"{where}: {split!r}/{name!r} has {len(numbers)} numbers for {len(index)} "
                                f"points; {_FIX}")


_FIX = "the journal is damaged: remove that line and run `landscape recover` again"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    """The file opens, every field fits (``reading.check_results``) and its done mask says every
    point is finished."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return _fits(f, path) and bool(f["done"][...].all())
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return False


def drop_journal_if_finished(path: Path) -> None:
    if is_finished(path):  # .init first: a journal without .init is never used to rebuild
        init_path(path).unlink(missing_ok=True)
        journal_path(path).unlink(missing_ok=True)


def opens(path: Path) -> bool:
    """The file opens and every field fits (``reading.check_results``): a readable file, which
    ``recover`` never trades for a rebuilt one."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return _fits(f, path)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return False


def _fits(f: h5py.File, path: Path) -> bool:
    from landscape.grid.reading import check_results  # reading imports this module

    kind = f.attrs.get("kind")
    try:
        check_results(f, path, kind if isinstance(kind, str) else "")
    except UserError:
        return False
    return True


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
        try:  # rebuilt in memory: HDF5 never meets a full disk
            with memory_file(path, init.read_bytes()) as f:
                for number, r in journal_lines(journal):
                    check_record(f, r, f"{journal}, line {number}")
                    write_arrays(f, [tuple(i) for i in r["index"]], r["metrics"])
                done, rebuilt = int(f["done"][...].sum()), file_image(f)
        except UserError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise UserError(f"the recovery copy {init} is damaged ({first}); it cannot be rebuilt: "
                            "rerun the command with --overwrite to compute it again") from None
        with atomic_path(path) as tmp:  # replaces the damaged file once the rebuilt one is on disk
            tmp.write_bytes(rebuilt)
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
