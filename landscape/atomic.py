"""Atomic writes: a file of results appears whole, or not at all, and survives a power cut.

Every writer of a result file (checkpoints, run manifests, member records, part files, caches,
reports) goes through ``atomic_path``: the data is written to a temporary file beside the
target, flushed to disk (``fsync``), renamed over the target in one step, and the folder's
entry is flushed too. A reader never sees half a file, and a kill at any moment leaves either
the old file or the new one. On any failure (a full disk, an exception, Ctrl-C) the temporary
file is removed; only a SIGKILL can leave one, ``.<name>.<pid>.<thread>.tmp<suffix>``, which
``temporaries(path)`` finds (the results store removes those of its file under its lock).

Example:
    >>> with atomic_path("runs/x/report.npz") as tmp:
    ...     np.savez(tmp, loss=loss)        # any writer that takes a path
    >>> write_text("runs/x/report.md", "# Report\\n")
    >>> write_json("runs/x/manifest.json", {"method": "sse"})
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from landscape.errors import UserError

TMP = ".tmp"  # marks a temporary name: .<name>.<pid>.<thread>.tmp<suffix>


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary name keeps the target's suffix (``np.save`` and ``np.savez`` append theirs
    otherwise) and names the process and thread, so that concurrent writers never share one.
    On any exception the temporary file is removed (and any file a writer made by appending a
    suffix of its own to the name, as ``np.save`` does), ``path`` is left as it was, and an
    ``OSError`` that names no file (a full disk) is raised naming ``path``.

    Args:
        path: the file to write (its folder is created if missing).
        fsync: flush the file and its folder to disk (off only for throw-away files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP}{path.suffix}")
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_temporary(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # a full disk: say where
        raise
    if fsync:
        _fsync_dir(path.parent)


def temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files that ``atomic_path`` writes for ``path`` (any process's) and that a
    SIGKILL left behind: only the holder of a lock on ``path`` may remove them."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.\d+\.\d+{re.escape(TMP)}")
    return sorted(p for p in path.parent.glob(f".{glob.escape(path.name)}.*{TMP}*") if pattern.match(p.name))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, doc: Any, *, strict: bool = False, **dumps: Any) -> Path:
    """Write ``doc`` as JSON to ``path`` atomically (``dumps`` go to ``json.dumps``, e.g.
    ``indent=2, sort_keys=True``); returns the path.

    With ``strict`` (every results file: reports, records, manifests) the file is standard JSON
    that any parser reads: NaN and infinite floats, at any depth of dicts, lists and tuples,
    are written as ``null`` (``json.dumps`` would write the literal ``NaN``, which is not JSON).
    Nothing else changes."""
    if strict:
        return write_text(path, json.dumps(finite_json(doc), allow_nan=False, **dumps))
    return write_text(path, json.dumps(doc, **dumps))


def finite_json(doc: Any) -> Any:
    """``doc`` with every non-finite float (NaN, inf; numpy's too) replaced by None, through
    dicts, lists and tuples; anything else is returned as it is."""
    if isinstance(doc, (float, np.floating)):
        return float(doc) if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite_json(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite_json(v) for v in doc]
    return doc


def _remove_temporary(tmp: Path) -> None:
    """Remove ``tmp`` and what a writer made of it by appending a suffix (``np.save``)."""
    for left in (tmp, *tmp.parent.glob(glob.escape(tmp.name) + ".*")):
        with contextlib.suppress(OSError):
            left.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Flush the folder's entry for the renamed file (not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_or_rescue(save: Callable[..., Any], obj: Any, path: str | os.PathLike, *args: Any) -> Any:
    """``save(obj, path, *args)`` (e.g. a trained model's checkpoint); when that fails with an OS
    error (the disk filled during training), ``obj`` is saved to a rescue file instead and a
    ``UserError`` says where, so that nothing trained is lost."""
    try:
        return save(obj, path, *args)
    except OSError as exc:
        rescue(save, obj, path, exc, *args)


def rescue(save: Callable[..., Any], obj: Any, path: str | os.PathLike, exc: OSError, *args: Any) -> NoReturn:
    """Save ``obj`` as ``landscape-rescued-<pid>-<name of path>`` in the first of the temporary
    folder, the home folder and the current folder that takes it; raise a ``UserError`` naming it."""
    path = Path(path)
    reason = exc.strerror or str(exc)
    for folder in (Path(tempfile.gettempdir()), Path.home(), Path.cwd()):
        kept = folder / f"landscape-rescued-{os.getpid()}-{path.name}"
        try:
            save(obj, kept, *args)
        except OSError:
            continue
        raise UserError(f"could not write {path} ({reason}); the trained model is saved as {kept}: move it there "
                        "once there is room") from None
    raise UserError(f"could not write {path} ({reason}), nor a rescue copy anywhere") from None
