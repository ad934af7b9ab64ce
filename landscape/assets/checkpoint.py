"""Checkpoints: one ``.safetensors`` file per model, self-describing through its metadata.

The metadata holds a JSON document under the key ``landscape`` (arch, arch_kwargs, num_classes,
dataset and, for trained members, method, member, seed, epochs, parent). Checkpoints of other
tools are accepted too (``.pt``/``.pth``/``.bin``/``.ckpt``, and safetensors without metadata):
their architecture comes from the caller, their state dict is found under the usual keys with
the usual name prefixes removed (``assets.state_dicts``), and pickles are read by
``torch.load(weights_only=True)`` with every class they name as an inert stand-in
(``assets.pickles``): nothing from a file is ever imported, constructed or called. What the
metadata says is checked before it is used (``CheckpointMeta``; the arch and its keyword arguments
by ``models.build_model``), and weights that are not finite or not dense are refused: every error
is one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.assets.models import build_model
from landscape.assets.pickles import load_pickled
from landscape.assets.registry import brief
from landscape.assets.state_dicts import FLAGS, Found, candidates, choose, strip
from landscape.atomic import write_bytes
from landscape.errors import UserError, first_line

METADATA_KEY = "landscape"
PT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself (the ``landscape`` metadata document)."""

    arch: str
    num_classes: int
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    method: str | None = None
    member: int | None = None
    seed: int | None = None
    epochs: int | None = None
    parent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch:
            raise UserError(f"metadata field 'arch' must be a non-empty string, got {brief(self.arch)}")
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise UserError(f"metadata field 'num_classes' must be a positive integer, got {brief(self.num_classes)}")
        for name in ("arch_kwargs", "extra"):
            if not isinstance(getattr(self, name), dict):
                raise UserError(f"metadata field '{name}' must be a JSON object, got {brief(getattr(self, name))}")
        for name in ("dataset", "method", "parent"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise UserError(f"metadata field '{name}' must be a string, got {brief(value)}")
        for name in ("member", "seed", "epochs"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise UserError(f"metadata field '{name}' must be an integer, got {brief(value)}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CheckpointMeta":
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:  # bad JSON, an integer of 4300+ digits, deep nesting
            raise UserError(f"checkpoint metadata is not valid JSON: {first_line(exc)}") from None
        if not isinstance(doc, dict):
            raise UserError(f"checkpoint metadata must be a JSON object, got {type(doc).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in doc.items() if k in names}
        extra = known.pop("extra", {})
        if not isinstance(extra, dict):
            raise UserError(f"metadata field 'extra' must be a JSON object, got {brief(extra)}")
        extra = {**extra, **{k: v for k, v in doc.items() if k not in names}}
        missing = [k for k in ("arch", "num_classes") if k not in known]
        if missing:
            raise UserError(f"checkpoint metadata lacks the field '{missing[0]}'")
        return cls(**known, extra=extra)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on CPU unless asked) and its metadata."""

    model: nn.Module
    meta: CheckpointMeta
    path: Path | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else "model"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: CheckpointMeta) -> str:
    """Write ``model``'s state dict and ``meta`` to a ``.safetensors`` file atomically.

    Returns:
        The sha256 of the written file (what children record as ``parent``).
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"checkpoints are written as .safetensors, got {path.name}")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    data = save(state, metadata={METADATA_KEY: meta.to_json()})  # in memory: any write error is an OSError
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    dataset: str | None = None,
    device: str | torch.device = "cpu",
    state_dict_key: str | None = None,
    strip_prefix: str | None = None,
) -> Checkpoint:
    """Load a checkpoint as a model in eval mode with its metadata.

    Args:
        path: a ``.safetensors`` file written by this toolkit, or a checkpoint of another tool:
            ``.pt``/``.pth``/``.bin``/``.ckpt`` (PyTorch Lightning, DDP, ``torch.compile``, a
            training script's ``{'model_state': ..., 'optimizer': ..., 'config': ...}``) or a
            safetensors file without metadata.
        arch, num_classes, arch_kwargs, dataset: describe a file without metadata (required
            then; ignored when the file describes itself).
        device: where the model's tensors go.
        state_dict_key: the entry holding the state dict (``a/b`` when nested); by default the
            top level or the first of ``state_dict``, ``model_state_dict``, ``model_state``,
            ``model``, ``module``, ``state_dict_ema`` that fits the architecture.
        strip_prefix: remove this prefix from the tensor names (entries without it are left
            out); by default ``module.``, ``model.``, ``_orig_mod.`` or none, whichever fits.

    Raises:
        UserError: missing or unreadable file, a pickle that needs code or classes to be read,
            metadata or arguments that fail their checks (``models.build_model``), unknown
            architecture, weights that do not fit it, or weights with NaN or inf (one line
            naming the file and the field or tensor).

    Example:
        >>> ckpt = load_checkpoint("runs/demo/member-1.safetensors")
        >>> ckpt.meta.arch, ckpt.model.training
        ('mnist1d_cnn', False)
        >>> load_checkpoint("epoch=9.ckpt", arch="resnet20", num_classes=10).meta.arch
        'resnet20'
    """
    path = Path(path)
    found, meta = read_state_dicts(path, state_dict_key=state_dict_key)
    if meta is None:
        if arch is None or num_classes is None:
            raise UserError(
                f"{path.name} does not record its architecture; pass --arch NAME --num-classes N "
                "(e.g. --arch timm:resnet18 --num-classes 10)"
            )
        meta = _given_meta(path, arch, num_classes, arch_kwargs, dataset)
        source = "the model given (--arch, --num-classes, --arch-kwargs)"
    else:
        source = "the model its metadata describes (arch, num_classes, arch_kwargs)"
    try:  # the arch_kwargs go in as one mapping: nothing from a file reaches another parameter
        model = build_model(meta.arch, meta.num_classes, meta.arch_kwargs)
    except UserError as exc:
        raise UserError(f"{path}: building {source}: {exc}") from None
    chosen, prefix = choose(found, model.state_dict(), strip_prefix)
    _load_state(model, _stripped(chosen, prefix, path), path, chosen.where)
    model.to(device).eval()
    return Checkpoint(model, meta, path, file_sha256(path))


def _given_meta(path: Path, arch: str, num_classes: int, arch_kwargs: Any, dataset: Any) -> CheckpointMeta:
    """The metadata of a file that has none, from the caller's arguments (the CLI's flags)."""
    kwargs = {} if arch_kwargs is None else arch_kwargs
    try:  # a copy of a mapping; CheckpointMeta refuses anything else
        return CheckpointMeta(arch, num_classes, dict(kwargs) if isinstance(kwargs, Mapping) else kwargs, dataset)
    except UserError as exc:
        raise UserError(f"{path.name} records no architecture, and the one given (--arch, --num-classes, "
                        f"--arch-kwargs) is refused: {exc}") from None


def read_state_dicts(
    path: str | os.PathLike, *, state_dict_key: str | None = None
) -> tuple[list[Found], CheckpointMeta | None]:
    """The state dicts a checkpoint holds (most likely first) and its metadata, without building
    a model (what ``landscape info`` lists).

    Raises:
        UserError: a missing, unreadable or refused file (see ``load_checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (expected a .safetensors, .pt, .pth "
                        "or .ckpt file)")
    if path.suffix == ".safetensors":
        if state_dict_key is not None:
            raise UserError(f"--state-dict-key {state_dict_key}: {path.name} is a safetensors file, "
                            "a flat mapping of names to tensors with no entries to choose from")
        state, meta = _read_safetensors(path)
        return [Found(state, "the top level")], meta
    if path.suffix in PT_SUFFIXES:
        return candidates(load_pickled(path), path.name, state_dict_key), None
    raise UserError(f"unsupported checkpoint {path.name}: expected .safetensors, .pt, .pth, .bin "
                    "or .ckpt")


def _stripped(found: Found, prefix: str, path: Path) -> dict[str, torch.Tensor]:
    state = strip(found.tensors, prefix)
    if not state:
        first = next(iter(found.tensors))
        raise UserError(f"--strip-prefix {prefix}: no tensor name in {found.where} of {path.name} "
                        f"starts with it (the first is {first!r})")
    return state


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta | None]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable safetensors file: {first_line(exc)}") from None
    try:
        return state, (CheckpointMeta.from_json(raw) if raw is not None else None)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path,
                where: str = "the top level") -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise UserError(
            f"{path.name} ({where}) does not fit the architecture: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}; check --arch / --num-classes, or {FLAGS}"
        )
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise UserError(
                f"{path.name}: tensor {k} has shape {tuple(state[k].shape)}, the architecture "
                f"expects {tuple(v.shape)}; check --arch / --num-classes"
            )
        # another float width (fp16, bf16, fp64) is cast on load; integers for floats are not data
        if state[k].is_floating_point() != v.is_floating_point():
            raise UserError(f"{path.name}: tensor {k} is {state[k].dtype}, the architecture expects "
                            f"{v.dtype}; the file is damaged or not a checkpoint of this model")
        if state[k].layout != torch.strided or state[k].is_meta:
            raise UserError(f"{path.name}: tensor {k} is stored {state[k].layout} on {state[k].device.type}, "
                            "not as dense values; re-save it with torch.save(model.state_dict(), path)")
    check_finite(state, path.stem, f" ({path})")
    model.load_state_dict(state, strict=True)


def check_finite(state: dict[str, torch.Tensor], name: str, where: str = "") -> None:
    """Refuse weights with NaN or inf (a diverged run): nothing can be evaluated or trained from them.

    Raises:
        UserError: ``"<name> has non-finite weights (NaN or inf) in <tensor><where>; ..."``.
    """
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"{name} has non-finite weights (NaN or inf) in {k}{where}; nothing can be evaluated "
                            "or trained from them: take a checkpoint from before the run diverged")
