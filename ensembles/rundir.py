"""The run directory: the one place that knows its file names.

A run directory holds

- ``manifest.json``: method, hyperparameters, the finished members' records in order, versions;
- per member i (numbered from 1): ``member-<i>.safetensors`` (the checkpoint),
  ``member-<i>.test-probs.npy`` (test-set probabilities, float32, rows in test-set order) and
  ``member-<i>.json`` (its record, written last: it marks the member finished);
- a method's expensive state, ``<method>-state.safetensors`` or ``<method>-state-<i>.safetensors``
  (after member i of a trajectory).

Every file is written atomically (``landscape.atomic``). Every file is checked when it is read
back (``read_manifest``, ``read_record``, ``read_probs``, ``member_checkpoint``): a damaged or
foreign file is one ``UserError`` naming the file and the field, never a traceback, and a
member's checkpoint is used only when its sha256 is the one its record holds.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from landscape.assets.checkpoint import CheckpointMeta, file_sha256, save_checkpoint
from landscape.atomic import atomic_path, write_json
from landscape.errors import UserError, first_line

FORMAT_VERSION = 1
MEMBER_SUFFIXES = (".safetensors", ".test-probs.npy", ".json")  # in the order they are written
MANIFEST_FIELDS = ("format_version", "kind", "method", "config", "members", "versions")


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

    def member_indices(self) -> list[int]:
        """The numbers of the member records in the folder (``member-<i>.json``), in order."""
        found = (re.fullmatch(r"member-([1-9][0-9]*)\.json", p.name) for p in self.path.glob("member-*.json"))
        return sorted(int(m[1]) for m in found if m)

    def records(self, members: int) -> list[dict[str, Any]]:
        """The records of the finished members among 1..``members``, in member order.

        Raises:
            UserError: a record that is damaged (``read_record``).
        """
        return [self.read_record(i) for i in self.member_indices()
                if i <= members and self.finished(i)]

    def read_record(self, index: int) -> dict[str, Any]:
        """Member ``index``'s record, checked: every field ``write_member`` writes, of its type.

        Raises:
            UserError: not JSON, not an object, or a field missing or of another type.
        """
        path = self.record_path(index)
        record = read_json(path, "member record", self.retrain(index))
        if not isinstance(record, dict):
            raise UserError(f"{path} is not a member record (a JSON object); {self.retrain(index)}")
        for key, (what, ok) in self.record_fields(index).items():
            if key not in record:
                raise UserError(f"{path} has no field {key!r}; {self.retrain(index)}")
            if not ok(record[key]):
                raise UserError(f"{path}: field {key!r} must be {what}, got "
                                f"{short_repr(record[key])}; {self.retrain(index)}")
        return record

    def record_fields(self, index: int) -> dict[str, tuple[str, Callable[[Any], bool]]]:
        """The fields every member record has: what each must be, in words, and its test."""
        file, probs = self.checkpoint_path(index).name, self.probs_path(index).name
        return {
            "index": (str(index), lambda v: is_int(v) and v == index),
            "file": (repr(file), lambda v: v == file),
            "probs": (repr(probs), lambda v: v == probs),
            "sha256": ("64 hex digits", lambda v: isinstance(v, str) and bool(SHA256.fullmatch(v))),
            "seed": ("an integer or null", lambda v: v is None or is_int(v)),
            "start": ("a string", lambda v: isinstance(v, str)),
            "epochs": ("a non-negative integer", lambda v: is_int(v) and v >= 0),
            "lr": ("a finite number or null", lambda v: v is None or is_number(v)),
            "lrs": ("a list of finite numbers", lambda v: isinstance(v, list) and all(map(is_number, v))),
            "test_acc": ("a number in [0, 100] or null",
                         lambda v: v is None or (is_number(v) and 0 <= v <= 100)),
        }

    def read_probs(self, index: int) -> np.ndarray:
        """Member ``index``'s test probabilities, checked: (N, C) float32 values in [0, 1], rows
        summing to 1 (read without pickle: an object array is refused, never unpickled).

        Raises:
            UserError: not a ``.npy`` array, or not such probabilities.
        """
        path = self.probs_path(index)
        try:
            probs = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"{path} is not a readable probability array ({first_line(exc)}); "
                            f"{self.retrain(index)}") from None
        if not isinstance(probs, np.ndarray):  # an .npz archive under the .npy name
            probs.close()
            raise UserError(f"{path} is an .npz archive, not one array; {self.retrain(index)}")
        if problem := probs_problem(probs):
            raise UserError(f"{path} {problem}; {self.retrain(index)}")
        return probs

    def member_checkpoint(self, index: int, record: dict[str, Any] | None = None) -> Path:
        """The checkpoint of the finished member ``index``, checked against the sha256 its record
        (``record``, else ``read_record(index)``) holds.

        Raises:
            UserError: the checkpoint is missing, or is another file (both files named).
        """
        record = self.read_record(index) if record is None else record
        path, own = self.checkpoint_path(index), self.record_path(index).name
        if not path.is_file():
            raise UserError(f"{path} is missing although {own} records member {index} as finished; "
                            f"{self.retrain(index)}")
        actual = file_sha256(path)
        if actual != record["sha256"]:
            owner = self.owner_of(actual)
            whose = f" (it is the checkpoint member-{owner}.json records)" if owner else ""
            raise UserError(f"{path.name} does not match {own} in {self.path}: its sha256 is "
                            f"{actual[:12]}..., {own} records {record['sha256'][:12]}...{whose}; the "
                            f"member files were swapped or changed: put them back, or "
                            f"{self.retrain(index)}")
        return path

    def owner_of(self, sha256: str) -> int | None:
        """The member whose record holds ``sha256`` (None: none does; damaged records are skipped)."""
        for i in self.member_indices():
            try:
                record = json.loads(self.record_path(i).read_text())
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(record, dict) and record.get("sha256") == sha256:
                return i
        return None

    def retrain(self, index: int) -> str:
        """How to replace member ``index``'s files (for error messages)."""
        return f"delete {self.path / f'member-{index}'}.* and rerun `landscape train` to train it again"

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

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, checked to be an ensemble run's.

        Raises:
            UserError: no manifest, or not one of this toolkit's run directories.
        """
        path = self.manifest_path
        if not path.is_file():
            raise UserError(f"{self.path} is not a run directory (no {path.name}); "
                            "train one with `landscape train`")
        manifest = read_json(path, "run manifest", "train the run again with `landscape train "
                             "--overwrite`")
        if not isinstance(manifest, dict) or manifest.get("kind") != "ensemble-run":
            raise UserError(f"{path} is not an ensemble run manifest")
        missing = [k for k in MANIFEST_FIELDS if k not in manifest]
        unknown = sorted(set(manifest) - set(MANIFEST_FIELDS))
        if missing or unknown:
            what = f"has no field {missing[0]!r}" if missing else f"has unknown fields {unknown}"
            raise UserError(f"{path} {what}; this toolkit's manifests hold exactly "
                            f"{', '.join(MANIFEST_FIELDS)}")
        for key, (what, ok) in MANIFEST_CHECKS.items():
            if not ok(manifest[key]):
                raise UserError(f"{path}: field {key!r} must be {what}, got "
                                f"{short_repr(manifest[key])}")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest, indent=2, sort_keys=True, strict=True)


# ----------------------------------------------------------------------------- checks

SHA256 = re.compile(r"[0-9a-f]{64}")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


MANIFEST_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "format_version": (f"{FORMAT_VERSION} (this toolkit's format)",
                       lambda v: is_int(v) and v == FORMAT_VERSION),
    "method": ("a string", lambda v: isinstance(v, str)),
    "config": ("an object", lambda v: isinstance(v, dict)),
    "members": ("a list of member records", lambda v: isinstance(v, list)
                and all(isinstance(m, dict) for m in v)),
    "versions": ("an object of version strings", lambda v: isinstance(v, dict)
                 and all(isinstance(x, str) for x in v.values())),
}


def read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON document in ``path``; ``what`` names it and ``fix`` says how to mend it in the
    error.

    Raises:
        UserError: unreadable, not UTF-8, or not JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UserError(f"{path} is not a readable {what} ({first_line(exc)}); {fix}") from None


def probs_problem(probs: np.ndarray) -> str | None:
    """What makes ``probs`` other than (N, C) float32 class probabilities, or None."""
    if probs.dtype.kind != "f" or probs.dtype.itemsize != 4:
        return f"holds {probs.dtype} values, not float32 probabilities"
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
        return f"has shape {probs.shape}, not (test samples, classes)"
    if not np.isfinite(probs).all():
        return "holds NaN or infinite probabilities (the member diverged, or the file is damaged)"
    if probs.min() < 0 or probs.max() > 1:
        return "holds values outside [0, 1], not probabilities"
    if np.abs(probs.sum(1, dtype=np.float64) - 1).max() > 1e-3:
        return "has rows that do not sum to 1, not probabilities"
    return None


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut at ``limit`` characters."""
    try:
        text = repr(value)
    except RecursionError:
        return "(a value nested too deeply to show)"
    return text if len(text) <= limit else text[: limit - 3] + "..."
