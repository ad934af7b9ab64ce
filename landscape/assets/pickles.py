"""Pickled checkpoints (``torch.save`` files: .pt, .pth, .bin, .ckpt) read without running them.

Only ``torch.load(weights_only=True)`` ever reads a pickle here: torch's own restricted unpickler,
which builds tensors and plain containers and looks every other name (``GLOBAL``) up in an
allowlist, never importing it. Files from other tools name further classes (a config dataclass,
Lightning's hyper-parameters, numpy scalars, ``argparse.Namespace``). Before the load, the names a
file's pickle refers to are listed statically (``torch.serialization.get_unsafe_globals_in_checkpoint``,
which disassembles the pickle without running it). Each is allowlisted for that one load as a
fresh ``StandIn`` subclass: what the unpickler would construct becomes an inert record of its
arguments and state, so nothing named by the file is imported, constructed or called. Names that
only code needs (``builtins.open``, ``getattr``, ``eval``, ``os.system``, ``subprocess``, ...) refuse
the file outright. See docs/architecture.md, "landscape/assets/".
"""

from __future__ import annotations

import builtins
import pickle
import re
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar

import torch

from landscape.errors import UserError

# Modules whose names in a pickle can only mean "run this": the file is refused before loading.
# (A stand-in would be inert anyway; refusing says clearly what the file tried.)
CODE_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy", "pty", "socket",
    "ctypes", "pickle", "_pickle", "marshal", "code", "codeop", "webbrowser", "multiprocessing",
    "signal", "pdb", "timeit", "platform", "asyncio", "threading", "_thread", "io", "_io",
})
RESAVE = "re-save the weights with torch.save(model.state_dict(), path) or as .safetensors"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# torch's allowlist for one load is process-wide: loads with stand-ins take turns.
_LOCK = threading.Lock()


class StandIn:
    """An inert record of an object the pickle would have built from a class it names.

    ``target`` is the name (``"mypkg.config.TrainConfig"``); ``args`` what it would have been
    called with; ``state`` what ``__setstate__`` would have received. No method runs anything.
    """

    target: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.target} (not constructed)>"


def stand_in(target: str) -> type[StandIn]:
    """A fresh ``StandIn`` subclass for the global ``target`` (never imported)."""
    label = re.sub(r"\W", "_", target.rsplit(".", 1)[-1]) or "StandIn"
    return type(label, (StandIn,), {"target": target, "__module__": __name__})


def describe(obj: Any) -> str:
    """A short description of an unpickled object, for messages (``'a dict of 3 entries'``)."""
    if isinstance(obj, StandIn):
        return f"a pickled {obj.target} object"
    if isinstance(obj, type) and issubclass(obj, StandIn):
        return f"the class {obj.target}"
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, dict):
        return f"a dict of {len(obj)} entries"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    kind = type(obj).__name__
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def code_global(name: str) -> bool:
    """Whether the pickle global ``name`` can only be code (a function of builtins, os, ...)."""
    module, _, attr = name.rpartition(".")
    top = module.split(".")[0]
    if top in ("builtins", "__builtin__"):
        return not isinstance(getattr(builtins, attr, None), type)  # open, getattr, eval, ...
    return top in CODE_MODULES


def load_pickled(path: Path) -> Any:
    """Unpickle ``path`` with ``torch.load(weights_only=True)``, classes it names as stand-ins.

    Raises:
        UserError: the pickle names code (``builtins.open``, ``os.system``, ...), holds what the
            restricted unpickler cannot rebuild, or is not a PyTorch file.
    """
    names = sorted(_unsafe_globals(path))
    code = [n for n in names if code_global(n)]
    if code:
        raise UserError(f"refusing {path.name}: its pickle calls {code[0]}, which no checkpoint "
                        f"needs (nothing from it was run); {RESAVE}")
    stand_ins = [(stand_in(n), n) for n in names]
    try:
        with _LOCK, torch.serialization.safe_globals(stand_ins), warnings.catch_warnings():
            # a protocol other than torch.save's 2 either loads or is refused below: no warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _reason(exc, stand_ins)
        raise UserError(f"refusing {path.name}: its pickle holds what a safe load cannot rebuild "
                        f"({reason}; nothing from it was run); {RESAVE}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        reason = _reason(exc, stand_ins)
        raise UserError(f"{path.name} is not a readable PyTorch file ({reason})") from None
    except Exception as exc:  # noqa: BLE001 - a stand-in used where torch needs the real class
        reason = _reason(exc, stand_ins)
        raise UserError(f"refusing {path.name}: it needs a class that is never imported to be "
                        f"rebuilt ({type(exc).__name__}: {reason}); {RESAVE}") from None


def _unsafe_globals(path: Path) -> list[str]:
    """The globals of a ``torch.save`` zip file outside torch's allowlist, read without running
    the pickle. Other files (the legacy format, plain pickles) get none: the load then refuses
    any name torch does not allow."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError):
        return []


def _reason(exc: BaseException, stand_ins: list[tuple[type, str]]) -> str:
    """The one sentence of ``exc`` that says what failed: torch's inner weights-only message when
    there is one, without colour codes or torch's advice to load unsafely."""
    inner = exc.__context__ if isinstance(exc.__context__, pickle.UnpicklingError) else exc
    text = _ANSI.sub("", str(inner)).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = " ".join(text.split()) or type(exc).__name__
    for cls, name in stand_ins:
        text = text.replace(repr(cls), name)
    text = text.split(" Please use `torch.serialization.add_safe_globals")[0]
    return text.rstrip(" .;")
