"""The run directory: the one place that knows its file names.

A run directory holds

- ``manifest.json``: method, hyperparameters, the finished members' records in order, versions;
- per member i (numbered from 1): ``member-<i>.safetensors`` (the checkpoint),
  ``member-<i>.test-probs.npy`` (test-set probabilities, float32, rows in test-set order) and
  ``member-<i>.json`` (its record, written last: it marks the member finished);
- a method's expensive state, ``<method>-state.safetensors`` or ``<method>-state-<i>.safetensors``
  (after member i of a trajectory).

Every file is written atomically (``landscape.atomic``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from landscape.assets.checkpoint import CheckpointMeta, save_checkpoint
from landscape.atomic import atomic_path, write_json
from landscape.errors import UserError

MEMBER_SUFFIXES = (".safetensors", ".test-probs.npy", ".json")  # in the order they are written


@dataclass(frozen=True)
class RunDir:
    """The files of the run directory ``path`` (which need not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str or os.PathLike is welcome

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def member_file(self, index: int, suffix: str) -> Path:
        """``member-<index><suffix>``, ``suffix`` one of ``MEMBER_SUFFIXES``."""
        return self.path / f"member-{index}{suffix}"

    def checkpoint_path(self, index: int) -> Path:
        return self.member_file(index, ".safetensors")

    def probs_path(self, index: int) -> Path:
        return self.member_file(index, ".test-probs.npy")

    def record_path(self, index: int) -> Path:
        return self.member_file(index, ".json")

    def state_path(self, method: str, member: int | None = None) -> Path:
        """A method's state file: ``<method>-state.safetensors``, or the state of a trajectory
        after member ``member`` (``<method>-state-<member>.safetensors``)."""
        tail = "" if member is None else f"-{member}"
        return self.path / f"{method}-state{tail}.safetensors"

    def finished(self, index: int) -> bool:
        """Member ``index`` has all its files."""
        return all(self.member_file(index, s).exists() for s in MEMBER_SUFFIXES)

    def records(self, members: int) -> list[dict[str, Any]]:
        """The records of the finished members among 1..``members``, in member order."""
        return [json.loads(self.record_path(i).read_text())
                for i in range(1, members + 1) if self.finished(i)]

    def write_member(self, index: int, model: nn.Module, meta: CheckpointMeta, probs: np.ndarray,
                     fields: dict[str, Any]) -> str:
        """Write member ``index``: checkpoint, test probabilities, then its record (the file
        names, sha256 and seed, then ``fields``), which marks it finished. Returns the
        checkpoint's sha256."""
        sha = save_checkpoint(model.cpu(), self.checkpoint_path(index), meta)
        with atomic_path(self.probs_path(index)) as tmp:
            np.save(tmp, probs)
        record = {"index": index, "file": self.checkpoint_path(index).name, "sha256": sha,
                  "probs": self.probs_path(index).name, "seed": meta.seed, **fields}
        write_json(self.record_path(index), record, indent=2, sort_keys=True, strict=True)
        return sha

    def copy_member(self, index: int, dst: RunDir) -> None:
        """Copy member ``index``'s files into ``dst`` (the record last)."""
        dst.path.mkdir(parents=True, exist_ok=True)
        for suffix in MEMBER_SUFFIXES:
            with atomic_path(dst.member_file(index, suffix)) as tmp:
                shutil.copyfile(self.member_file(index, suffix), tmp)

    def clear(self) -> None:
        """Remove every member's files and every method's state (``--overwrite``)."""
        for f in [*self.path.glob("member-*"), *self.path.glob("*-state*.safetensors")]:
            f.unlink()

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, checked to be an ensemble run's.

        Raises:
            UserError: no manifest, or not one of this toolkit's run directories.
        """
        if not self.manifest_path.is_file():
            raise UserError(f"{self.path} is not a run directory (no {self.manifest_path.name}); "
                            "train one with `landscape train`")
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.manifest_path} is not a readable run manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("kind") != "ensemble-run":
            raise UserError(f"{self.manifest_path} is not an ensemble run manifest")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest, indent=2, sort_keys=True, strict=True)
