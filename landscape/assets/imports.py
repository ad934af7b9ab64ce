"""Import paths to a user's own code: ``path/to/file.py:name`` or ``package.module:name``.

Only specs the user gives (a flag, a Python argument) are imported: running the user's own code
is what they asked for. Names recorded in a file (a checkpoint's metadata) are never imported
on the file's word alone.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from landscape.errors import UserError, first_line

_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_import_path(spec: str) -> bool:
    """Whether ``spec`` reads as ``file.py:name`` or ``package.module:name``."""
    where, sep, name = spec.rpartition(":")
    return bool(sep and where and name.isidentifier() and (where.endswith(".py") or _MODULE.match(where)))


def import_object(spec: str, *, what: str = "object") -> Any:
    """The object named by ``spec`` (``file.py:name`` or ``package.module:name``).

    Raises:
        UserError: the spec is malformed, the file is missing, the import fails, or the module
            has no such name (one line, naming the cause).
    """
    if not is_import_path(spec):
        raise UserError(f"{what} {spec!r} is not an import path; expected path/to/file.py:name or "
                        "package.module:name")
    where, _, name = spec.rpartition(":")
    module = _load_file(where, spec) if where.endswith(".py") else _load_module(where, spec)
    if not hasattr(module, name):
        raise UserError(f"{where} has no {name!r} (from {what} {spec})")
    return getattr(module, name)


def _load_file(where: str, spec: str):
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise UserError(f"{where} does not exist (from {spec}); give a path to a .py file")
    key = "landscape_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if key in sys.modules:
        return sys.modules[key]
    loader_spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[key] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is reported in one line
        del sys.modules[key]
        raise UserError(f"importing {where} failed: {type(exc).__name__}: {first_line(exc)}") from None
    return module


def _load_module(where: str, spec: str):
    try:
        return importlib.import_module(where)
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is reported in one line
        raise UserError(f"importing {where} failed (from {spec}): {type(exc).__name__}: {first_line(exc)}") from None
