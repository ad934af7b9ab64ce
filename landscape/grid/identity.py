"""A result file's identity: everything that decides its numbers. A rerun resumes a file only
when its identity matches the file's; everything else (device, engine, versions) is runtime."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from landscape.assets.checkpoint import Checkpoint
from landscape.grid.store import FORMAT_VERSION


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint as a file's identity names it: its (unique) name and its sha256."""

    name: str
    sha256: str

    @classmethod
    def of(cls, ckpt: Checkpoint, name: str | None = None) -> CheckpointRef:
        """``ckpt`` under ``name`` (default: its own), by its file's sha256, or by the sha256 of
        its tensors when it was not loaded from a file."""
        return cls(name or ckpt.name, ckpt.sha256 or weights_sha256(ckpt))


@dataclass(frozen=True)
class Identity:
    """The identity of a surface or paths file.

    Attributes:
        settings: the configuration fields that can change the numbers (``GridSettings
            .identity_fields`` and the geometry's), in the file's order.
        mode: ``three_point`` or ``random`` (planes), ``paths``.
        bn: the BN policy in force.
        dataset, arch: the dataset and architecture names.
        checkpoints: the checkpoints, in order.
        pairs: for paths, the pairs of checkpoint indices.
    """

    settings: dict[str, Any]
    mode: str
    bn: str
    dataset: str
    arch: str
    checkpoints: tuple[CheckpointRef, ...]
    pairs: tuple[tuple[int, int], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The identity as the file stores it (format version 1)."""
        out = dict(self.settings)
        out.update(mode=self.mode, bn=self.bn, dataset=self.dataset, arch=self.arch)
        if self.pairs is not None:
            out["pairs"] = [list(p) for p in self.pairs]
        out["checkpoints"] = [{"name": c.name, "sha256": c.sha256} for c in self.checkpoints]
        out["format_version"] = FORMAT_VERSION
        return out


def unique_names(ckpts: Sequence[Checkpoint]) -> list[str]:
    """The checkpoints' names, each made unique by trailing underscores (a.safetensors twice:
    ``a``, ``a_``)."""
    names: list[str] = []
    for c in ckpts:
        name = c.name
        while name in names:
            name += "_"
        names.append(name)
    return names


def weights_sha256(ckpt: Checkpoint) -> str:
    """A hash of a checkpoint's tensors (names and bytes), for checkpoints given as objects."""
    h = hashlib.sha256()
    for k, v in ckpt.model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return "weights:" + h.hexdigest()
