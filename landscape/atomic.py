"""Atomic writes: a file of results appears whole, or not at all, and survives a power cut.

Every writer of a result file (checkpoints, run manifests, member records, part files, caches,
reports) goes through ``atomic_path``: the data is written to a temporary file beside the
target, flushed to disk (``fsync``), renamed over the target in one step, and the folder's
entry is flushed too. A reader never sees half a file, and a kill at any moment leaves either
the old file or the new one (plus, at worst, a stray ``.<name>.<pid>.tmp`` file).

Example:
    >>> with atomic_path("runs/x/report.npz") as tmp:
    ...     np.savez(tmp, loss=loss)        # any writer that takes a path
    >>> write_text("runs/x/report.md", "# Report\\n")
    >>> write_json("runs/x/manifest.json", {"method": "sse"})
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it replaces ``path``.

    The temporary name keeps the target's suffix (``np.save`` and ``np.savez`` append theirs
    otherwise) and names the process and thread, so that concurrent writers never share one.
    On an exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write (its folder is created if missing).
        fsync: flush the file and its folder to disk (off only for throw-away files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if fsync:
        _fsync_dir(path.parent)


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
