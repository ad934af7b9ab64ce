"""Models of your own: factories named by an import path, and ``nn.Module`` objects as checkpoints.

**Import paths.** An arch may be ``path/to/file.py:factory`` or ``package.module:factory``, a
callable taking ``num_classes`` and the arch keyword arguments and returning an ``nn.Module``.
``create_model`` resolves registry names first, then ``timm:<name>``, then import paths. The
arch is recorded in checkpoint metadata as given; a relative file path is looked up in the
current directory, then in the checkpoint's own folder.

**Safety rule.** Importing a file runs its code. An import path is imported only when the user
named it: the ``arch=`` of ``load_checkpoint`` (the CLI's ``--arch``), ``trust_arch(spec)`` for
the rest of the process, ``create_model(..., trust_arch=True)`` or
``load_checkpoint(..., trust_arch=True)``. A checkpoint whose metadata alone names an import
path is refused with a one-line message saying how to allow it: nothing a file says is run.

**Modules.** ``as_checkpoint(module)`` makes a ``Checkpoint`` of an ``nn.Module`` (a copy, on the
CPU, in eval mode) so that every API taking checkpoints takes modules of one architecture too.

Example:
    >>> ckpts = as_checkpoints({"a": model_a, "b": model_b})  # names a, b
    >>> ckpts[0].meta.arch   # the class's import path, or module:<qualname>
    'mypkg.nets:TinyCNN'
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from landscape.assets import checkpoint as files
from landscape.assets.checkpoint import Checkpoint, CheckpointMeta, check_finite
from landscape.assets.imports import import_object, is_import_path
from landscape.assets.models import TIMM_PREFIX, ModelFactory, build_model, model_names
from landscape.errors import UserError

MODULE_PREFIX = "module:"  # the arch of a module whose class no import path rebuilds
CheckpointLike = Union[str, os.PathLike, Checkpoint, nn.Module]

_TRUSTED: set[str] = set()  # import-path archs allowed for the rest of the process
# (import paths the caller named, folders where relative files are also looked up, allow all)
_ALLOWED: ContextVar[tuple[frozenset[str], tuple[Path, ...], bool]] = ContextVar(
    "allowed_archs", default=(frozenset(), (), False))


def trust_arch(spec: str) -> str:
    """Allow the import-path arch ``spec`` for the rest of this process (e.g. so that
    checkpoints recording it load without ``arch=``); returns ``spec``."""
    if not isinstance(spec, str) or not is_import_path(spec):
        raise UserError(f"trust_arch takes path/to/file.py:factory or package.module:factory, got {spec!r}")
    _TRUSTED.add(spec)
    return spec


@contextlib.contextmanager
def allowing_archs(*specs: str | None, search: Sequence[str | os.PathLike] = (),
                   everything: bool = False) -> Iterator[None]:
    """Inside the block, also import the import-path archs ``specs`` (None is skipped), or any
    with ``everything``, and look relative files up in ``search`` after the current directory.
    Adds to an enclosing block's allowances."""
    outer, dirs, anything = _ALLOWED.get()
    token = _ALLOWED.set((outer | {s for s in specs if isinstance(s, str)},
                          (*dirs, *(Path(d) for d in search)), anything or everything))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def imported_factory(arch: str, *, trust: bool = False) -> ModelFactory:
    """The factory an import-path arch names, imported if the safety rule allows it."""
    specs, dirs, everything = _ALLOWED.get()
    if not (trust or everything or _locate(arch) in {_locate(s) for s in _TRUSTED | specs}):
        raise UserError(f"refusing to import arch {arch!r}: importing runs its code, and a checkpoint's metadata "
                        f"alone does not allow that; name it with --arch {arch}, trust_arch=True or "
                        f"landscape.trust_arch({arch!r})")
    located = _locate(arch)
    if located != arch and not Path(located.rpartition(":")[0]).is_file():
        looked = ", ".join(str(d) for d in (Path.cwd(), *dirs))
        raise UserError(f"model file {arch.rpartition(':')[0]} does not exist (arch {arch!r}; looked in {looked})")
    factory = import_object(located, what="--arch")
    if not callable(factory):
        raise UserError(f"arch {arch!r} names a {type(factory).__name__}, not a callable returning an nn.Module")
    return factory


def _locate(spec: str) -> str:
    """``spec`` with a relative file made absolute: the first of the current directory and the
    search folders that holds it (else the current directory)."""
    where, _, name = spec.rpartition(":")
    if not where.endswith(".py"):
        return spec
    path = Path(where).expanduser()
    if not path.is_absolute():
        found = [d / path for d in (Path.cwd(), *_ALLOWED.get()[1]) if (d / path).is_file()]
        path = found[0] if found else Path.cwd() / path
    return f"{path.resolve()}:{name}"


def load_checkpoint(path: str | os.PathLike, *, arch: str | None = None, trust_arch: bool = False,
                    **kwargs: Any) -> Checkpoint:
    """``landscape.assets.checkpoint.load_checkpoint`` under the safety rule: an import-path arch
    is imported only if it is ``arch`` (what the caller names, e.g. ``--arch``), trusted with
    ``trust_arch(spec)``, or ``trust_arch=True``. Relative file paths are also looked up in the
    checkpoint's folder. Other keyword arguments go to the loader unchanged.

    Example:
        >>> load_checkpoint("a.pt", arch="nets/tiny.py:TinyCNN", num_classes=10)
    """
    with allowing_archs(arch, search=(Path(path).parent,), everything=trust_arch):
        return files.load_checkpoint(path, arch=arch, **kwargs)


@dataclass(frozen=True)
class ModuleCheckpoint(Checkpoint):
    """A checkpoint made from an ``nn.Module`` object (no file): named by ``label``."""

    label: str = "model"

    @property
    def name(self) -> str:
        return self.label


def as_checkpoint(obj: CheckpointLike, *, name: str | None = None, dataset: str | None = None,
                  num_classes: int | None = None, arch: str | None = None,
                  arch_kwargs: dict[str, Any] | None = None) -> Checkpoint:
    """A ``Checkpoint`` from a checkpoint file, a ``Checkpoint`` (returned as is) or an ``nn.Module``.

    A module is copied (the caller's is never changed) to the CPU in eval mode. Its metadata:
    ``arch`` (default: its class's import path, ``package.module:Class`` or ``file.py:Class``,
    if the class takes ``num_classes``; else ``module:<qualname>``, which no name rebuilds),
    ``num_classes`` (default: the output size of ``get_classifier()`` or of the last
    ``nn.Linear``), ``dataset``, and the sha256 of its tensors (``weights:<hex>``).

    Raises:
        UserError: anything else, a module with NaN or inf weights, or one whose number of
            classes cannot be found.
    """
    if isinstance(obj, Checkpoint):
        return obj if name is None else ModuleCheckpoint(obj.model, obj.meta, obj.path, obj.sha256, name)
    if isinstance(obj, (str, os.PathLike)):
        return load_checkpoint(obj, arch=arch, num_classes=num_classes, arch_kwargs=arch_kwargs, dataset=dataset)
    if not isinstance(obj, nn.Module):
        raise UserError(f"expected a checkpoint file, a landscape.Checkpoint or a torch nn.Module, "
                        f"got {type(obj).__name__}")
    check_finite(obj.state_dict(), name or "model")
    model = copy.deepcopy(obj).cpu().eval()
    n = num_classes if num_classes is not None else _num_classes(model)
    meta = CheckpointMeta(arch or _import_path(type(obj)), n, dict(arch_kwargs or {}), dataset)
    return ModuleCheckpoint(model, meta, None, weights_sha256(model), name or "model")


def as_checkpoints(items: Sequence[CheckpointLike] | Mapping[str, CheckpointLike]) -> list[Checkpoint]:
    """``as_checkpoint`` of each item; a mapping names them by its keys, and modules without a
    name are called ``model1``, ``model2``, ... by position."""
    if isinstance(items, Mapping):
        return [as_checkpoint(v, name=str(k)) for k, v in items.items()]
    if isinstance(items, (str, os.PathLike, nn.Module, Checkpoint)):
        raise UserError(f"expected a list of checkpoints or models, got one {type(items).__name__}")
    return [as_checkpoint(c, name=f"model{i + 1}" if isinstance(c, nn.Module) else None)
            for i, c in enumerate(items)]


def weights_sha256(model: nn.Module) -> str:
    """A hash of a model's tensors (names and bytes), ``weights:<hex>``."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return "weights:" + h.hexdigest()


def _num_classes(model: nn.Module) -> int:
    head = model.get_classifier() if callable(getattr(model, "get_classifier", None)) else None
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = head if isinstance(head, nn.Linear) else (linears[-1] if linears else None)
    if head is None:
        raise UserError(f"cannot tell the number of classes of {type(model).__name__} (no nn.Linear "
                        "classifier found); pass num_classes=")
    return head.out_features


def _import_path(cls: type) -> str:
    """``module:Class`` or ``/abs/file.py:Class`` when that rebuilds the class with num_classes,
    else ``module:<qualname>``."""
    qual, module = cls.__qualname__, sys.modules.get(cls.__module__)
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        params = []
    takes = any(p.name == "num_classes" or p.kind is p.VAR_KEYWORD for p in params)
    file = getattr(module, "__file__", None) or ""
    if not takes or not qual.isidentifier() or module is None or cls.__module__ == "__main__":
        return MODULE_PREFIX + qual
    if cls.__module__.startswith("landscape_user_") and file.endswith(".py"):  # imported from a file
        return f"{file}:{qual}"
    return f"{cls.__module__}:{qual}"


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: CheckpointMeta | None = None) -> str:
    """``landscape.assets.checkpoint.save_checkpoint``, refusing a file that could not be read
    back: ``meta.arch`` must be a registered name, ``timm:<name>``, or an import path that
    rebuilds the model's tensors (tried once). ``meta`` defaults to ``as_checkpoint(model).meta``.

    Returns:
        The sha256 of the written file.
    """
    meta = meta if meta is not None else CheckpointMeta(_import_path(type(model)), _num_classes(model))
    check_readable(model, meta, Path(path).name)
    return files.save_checkpoint(model, path, meta)


def check_readable(model: nn.Module, meta: CheckpointMeta, name: str) -> None:
    """Refuse metadata from which ``model``'s weights could not be loaded again."""
    arch = meta.arch
    if arch in model_names() or arch.startswith(TIMM_PREFIX):
        return
    if not is_import_path(arch) or arch.startswith(MODULE_PREFIX):
        raise UserError(f"refusing to write {name}: its arch {arch!r} is not a registered model, timm:<name> or "
                        f"an import path, so nothing could read it back; define {type(model).__name__} in a file "
                        "and give meta.arch 'path/to/file.py:factory', or register_model it")
    with allowing_archs(arch):
        try:
            rebuilt = build_model(arch, meta.num_classes, meta.arch_kwargs).state_dict()
        except UserError as exc:
            raise UserError(f"refusing to write {name}: its arch would not load back: {exc}") from None
    mine = model.state_dict()
    bad = [k for k in {*mine, *rebuilt} if k not in mine or k not in rebuilt or mine[k].shape != rebuilt[k].shape]
    if bad:
        raise UserError(f"refusing to write {name}: {arch} with {meta.arch_kwargs} builds other tensors than the "
                        f"model's (first: {sorted(bad)[0]}); give the arch_kwargs it was built with")
