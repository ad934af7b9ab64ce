"""Output locations checked before any work: a model trained for minutes is never lost because its
file cannot be written. ``output_file`` and ``writable_dir`` refuse a location that cannot be
written (a read-only or full file system, a name too long, a file in the way) before training;
``landscape.atomic.save_or_rescue`` writes a trained model and, when that still fails, keeps it
in a rescue file and says where."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from landscape.errors import UserError

NAME_ROOM = 64  # bytes the temporary (.<name>.<pid>.<thread>.tmp) and rescue names add to a file name


def writable_dir(path: str | os.PathLike, *, what: str = "--out") -> Path:
    """Make ``path`` a directory (with its parents) and check that a file can be created in it.

    Raises:
        UserError: a file in the way, no permission, a read-only or full file system, a name too long.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".landscape-probe-"):
            pass
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be written: {exc.strerror or exc}; choose another location") from None
    return path


def output_file(path: str | os.PathLike, *, suffix: str = ".safetensors", need_bytes: int = 0) -> Path:
    """Check, before training, that ``path`` can receive a ``suffix`` file of about ``need_bytes``.

    Raises:
        UserError: another suffix, a directory in the way, a name over the file system's limit,
            an unwritable folder, or less free space than ``need_bytes``.
    """
    path = Path(path)
    if path.suffix != suffix:
        raise UserError(f"--out {path} must end in {suffix} (models are written as {suffix} files)")
    limit = _name_max(next(p for p in path.absolute().parents if p.exists())) - NAME_ROOM
    if len(os.fsencode(path.name)) > limit:
        raise UserError(f"--out file name {path.name[:40]}... is {len(os.fsencode(path.name))} bytes, over the "
                        f"{limit} this file system leaves beside its temporary's; choose a shorter name")
    if path.is_dir():
        raise UserError(f"--out {path} is a directory; give a file name ending in {suffix}")
    folder = writable_dir(path.parent, what="the folder of --out")
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise UserError(f"--out {path}: {free / 1e6:.1f} MB free, the model needs about {need_bytes / 1e6:.1f} MB; "
                        "free some space or choose another location")
    return path


def model_bytes(model) -> int:
    """About what a model's safetensors file takes: its tensors and some room for the header."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) + 64 * 1024


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255
