"""Finding the model's state dict inside a checkpoint written by another tool.

Training code saves more than weights: PyTorch Lightning's ``.ckpt`` holds ``state_dict`` (names
prefixed ``model.``) beside optimizer states and hyper-parameters; DDP prefixes ``module.``;
``torch.compile`` prefixes ``_orig_mod.``; research code saves ``{'model_state', 'optimizer',
'scaler', 'config'}``; timm keeps ``state_dict_ema``. ``candidates`` lists the mappings of names
to tensors under the usual keys, ``fit_prefix`` picks the name prefix whose removal makes them fit
an architecture. Everything else in the file is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import torch

from landscape.assets.pickles import describe
from landscape.errors import UserError

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module",
                   "state_dict_ema")
PREFIXES = ("module.", "model.", "_orig_mod.")
# "", then each usual prefix, then two of them nested (DDP around a compiled model, ...)
AUTO_PREFIXES = ("",) + PREFIXES + tuple("".join(p) for p in permutations(PREFIXES, 2))
FLAGS = "choose the entry with --state-dict-key and the name prefix with --strip-prefix"


@dataclass(frozen=True)
class Found:
    """A mapping of names to tensors and where in the file it was (``"'state_dict'"``)."""

    tensors: dict[str, torch.Tensor]
    where: str


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of string names to tensors."""
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def candidates(obj: Any, name: str, key: str | None = None) -> list[Found]:
    """The state dicts of the unpickled file ``name``, most likely first.

    With ``key`` only that entry (``a/b`` for a nested one); otherwise the top level itself when it
    is a state dict, else the entries under ``STATE_DICT_KEYS``, one level deep inside each other.

    Raises:
        UserError: ``key`` is missing or not a state dict, or no state dict is found.
    """
    if key is not None:
        return [_chosen(obj, name, key)]
    if is_state_dict(obj):
        return [Found(dict(obj), "the top level")]
    found = list(_under_keys(obj, ()))
    if not found:
        raise UserError(f"{name} holds no state dict (a mapping of names to tensors) at its top "
                        f"level or under {', '.join(STATE_DICT_KEYS)}: it holds {_contents(obj)}; "
                        "pass --state-dict-key KEY for another entry (a whole pickled model is "
                        "not read: re-save it with torch.save(model.state_dict(), path))")
    return found


def _under_keys(obj: Any, trail: tuple[str, ...]) -> Iterable[Found]:
    if not isinstance(obj, Mapping) or len(trail) > 1:
        return
    for k in STATE_DICT_KEYS:
        value = obj.get(k)
        if is_state_dict(value):
            yield Found(dict(value), "'" + "/".join(trail + (k,)) + "'")
        elif isinstance(value, Mapping):
            yield from _under_keys(value, trail + (k,))


def _chosen(obj: Any, name: str, key: str) -> Found:
    value = obj
    parts = [key] if isinstance(obj, Mapping) and key in obj else key.split("/")
    for i, part in enumerate(parts):
        if not isinstance(value, Mapping) or part not in value:
            where = f"entry '{'/'.join(parts[:i])}'" if i else "the top level"
            raise UserError(f"--state-dict-key {key}: {where} of {name} has no entry {part!r}; "
                            f"it holds {_contents(value)}")
        value = value[part]
    if not is_state_dict(value):
        raise UserError(f"--state-dict-key {key}: that entry of {name} is {describe(value)}, not a "
                        f"state dict (a mapping of names to tensors)")
    return Found(dict(value), f"'{key}'")


def _contents(obj: Any, limit: int = 8) -> str:
    """``'model' (a pickled foo.Net object), 'epoch' (a int), ...`` or what ``obj`` is."""
    if not isinstance(obj, Mapping) or not obj:
        return describe(obj)
    items = [f"{k!r} ({describe(v)})" for k, v in list(obj.items())[:limit]]
    more = f" and {len(obj) - limit} more" if len(obj) > limit else ""
    return "entries " + ", ".join(items) + more


def strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries whose names start with ``prefix``, with it removed (others belong elsewhere)."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def fit_prefix(names: Iterable[str], expected: Iterable[str], forced: str | None = None) -> str:
    """The prefix to remove from ``names`` so that they are exactly ``expected``.

    ``forced`` (``--strip-prefix``) is used as given. Otherwise the first of ``AUTO_PREFIXES``
    that fits; when none does, the longest usual prefix shared by every name (or ``""``), so
    that the mismatch reported is the one of the names as the tool wrote them.
    """
    names, want = list(names), set(expected)
    if forced is not None:
        return forced
    for prefix in AUTO_PREFIXES:
        if {k[len(prefix):] for k in names if k.startswith(prefix)} == want:
            return prefix
    shared = [p for p in AUTO_PREFIXES if p and names and all(k.startswith(p) for k in names)]
    return max(shared, key=len, default="")


def choose(found: list[Found], expected: Iterable[str],
           forced: str | None = None) -> tuple[Found, str]:
    """The first candidate whose names fit ``expected`` after removing a prefix, and that prefix
    (the first candidate and its best prefix when none fits)."""
    want = list(expected)
    for f in found:
        prefix = fit_prefix(f.tensors, want, forced)
        if set(strip(f.tensors, prefix)) == set(want):
            return f, prefix
    return found[0], fit_prefix(found[0].tensors, want, forced)
