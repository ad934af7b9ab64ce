"""A result file's identity: everything that decides its numbers. A rerun resumes a file only
when its identity matches the file's; everything else (device, engine, versions) is runtime."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.assets.checkpoint import Checkpoint
from landscape.assets.modules import weights_sha256 as model_sha256
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
        data: for data given as objects (``landscape.Data``), each split's size and content
            hash, so that a rerun on other data is refused.
        image: for an image dataset, the evaluation transform used (``ImageTransform.to_dict``:
            size, resize, mean, std, channels, interpolation); absent for other data.
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
    data: dict[str, dict[str, Any]] | None = None  # the user's own data: size and sha256 per split
    image: dict[str, Any] | None = None  # an image dataset's transform

    def to_dict(self) -> dict[str, Any]:
        """The identity as the file stores it (format version 1)."""
        out = dict(self.settings)
        out.update(mode=self.mode, bn=self.bn, dataset=self.dataset, arch=self.arch)
        if self.data is not None:
            out["data"] = self.data
        if self.image is not None:
            out["image"] = self.image
        if self.pairs is not None:
            out["pairs"] = [list(p) for p in self.pairs]
        out["checkpoints"] = [{"name": c.name, "sha256": c.sha256} for c in self.checkpoints]
        out["format_version"] = FORMAT_VERSION
        return out


def display_names(items: Sequence[str | os.PathLike | Checkpoint]) -> list[str]:
    """The names under which checkpoints appear in plots, reports, results files and default
    output names: each file's stem, lengthened by the shortest run of its folders that tells it
    apart from other files with the same stem.

    ``["a.safetensors", "b.pt"]`` give ``a``, ``b`` (distinct stems are kept as they are);
    ``["run1/model.pt", "run2/model.pt"]`` give ``run1/model``, ``run2/model``;
    ``["a/x/m.pt", "b/x/m.pt"]`` give ``a/x/m``, ``b/x/m``. The same file given twice, and
    checkpoints given as objects without a path (named by ``Checkpoint.name``), are told apart by
    trailing underscores (``m``, ``m_``), as is a name that is also the folder part of another
    (a results file stores ``run1/model`` under a folder ``run1``).

    Args:
        items: paths (strings or ``os.PathLike``) or ``Checkpoint`` objects, in order.
    """
    keys: list[tuple[str, ...] | None] = []
    for item in items:
        path = item.path if isinstance(item, Checkpoint) else Path(item)
        parts = Path(os.path.abspath(path)).parts[1:] if path is not None else ()
        keys.append((*parts[:-1], Path(parts[-1]).stem) if parts else None)
    groups: dict[str, set[tuple[str, ...]]] = {}
    for key in keys:
        if key is not None:
            groups.setdefault(key[-1], set()).add(key)
    names = []
    for item, key in zip(items, keys):
        if key is None:
            names.append(item.name if isinstance(item, Checkpoint) else str(item))
            continue
        others = [k for k in groups[key[-1]] if k != key]
        n = 1
        while n < len(key) and any(k[-n:] == key[-n:] for k in others):
            n += 1
        names.append("/".join(key[-n:]))
    folders = {"/".join(name.split("/")[:i]) for name in names for i in range(1, name.count("/") + 1)}
    unique: list[str] = []
    for name in names:
        while name in unique or name in folders:
            name += "_"
        unique.append(name)
    return unique


def unique_names(ckpts: Sequence[Checkpoint]) -> list[str]:
    """The checkpoints' display names (``display_names``); kept for callers of the old name."""
    return display_names(ckpts)


def weights_sha256(ckpt: Checkpoint) -> str:
    """A hash of a checkpoint's tensors (names and bytes), for checkpoints given as objects."""
    return model_sha256(ckpt.model)
