"""Readable training presets (TOML files beside this module)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ensembles.config import RunConfig, field_hints, type_error
from landscape.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_DIR = Path(__file__).parent
FIELDS = ("data", "members", "epochs", "lr", "wd", "batch_size", "cycle_epochs", "cycle_lr",
          "optimizer", "warmup_epochs", "label_smoothing", "mixup", "cutmix", "grad_clip", "amp")


def preset_names() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The settings of preset ``name`` (a file ``<name>.toml`` here, or a path to one).

    Raises:
        UserError: unknown preset, a field this toolkit does not know, or a value of the wrong
            type (the message names the file, the field and the type expected).
    """
    path = Path(name) if name.endswith(".toml") else _DIR / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}; expected one of {', '.join(preset_names())} "
                        "or a path to a .toml file")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"preset {path} is not valid TOML: {exc}") from None
    unknown = set(doc) - set(FIELDS) - {"description"}
    if unknown:
        raise UserError(f"preset {path.name} has unknown fields {sorted(unknown)}; "
                        f"known: {', '.join(FIELDS)}")
    hints = {**field_hints(RunConfig), "description": str}
    for key, value in doc.items():
        if problem := type_error(key, value, hints[key]):
            raise UserError(f"preset {path.name}: {problem}")
    return {k: v for k, v in doc.items() if k in FIELDS}
