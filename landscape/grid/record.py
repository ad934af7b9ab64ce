"""The engine record of a result file (``runtime.engine``): which settings a grid ran with, who
chose them (the user, or the tuner's measurements) and for what, and what the out-of-memory
back-offs learnt since. A resumed run starts from it. The JSON layout is that of format 1."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from landscape.engine.settings import EngineSettings


@dataclass(frozen=True)
class Measured:
    """What the tuner measured (present when ``chosen_by`` is ``measured``)."""

    bn_ghosts: int = 1
    bn_folded_layers: int = 0
    matmul_convs: int = 0
    seconds_per_point: dict[str, float] = field(default_factory=dict)
    note: str = ""
    cuda_graph: str | None = None
    bn_ghosts_note: str | None = None


@dataclass(frozen=True)
class BackedOff:
    """The settings after the out-of-memory back-offs so far, and their lines."""

    backoffs: tuple[str, ...]
    batch_size: int
    max_group: int | None
    workers: int
    bn_ghosts: int | None  # None: not recorded (files of earlier versions)


AFTER_BACKOFF = ("backoffs", "batch_size_after_backoff", "max_group", "workers_after_backoff",
                 "bn_ghosts_after_backoff")


@dataclass(frozen=True)
class EngineRecord:
    """``runtime.engine`` of a result file, typed."""

    path: str  # the strategy (the key keeps its format-1 name)
    batch_size: int
    group_size: int
    workers: int
    chosen_by: str  # "user" or "measured"
    tuned_for: dict[str, Any] | None  # GridEvaluator.tuning_key(), when chosen
    data: str | None = None  # where the evaluation data lived
    measured: Measured | None = None
    backed_off: BackedOff | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EngineRecord | None:
        """The record in a file's runtime (None when there is none); keys that files of
        earlier versions lack take their defaults."""
        if not d or "path" not in d:
            return None
        measured = None
        if d.get("chosen_by") == "measured":
            measured = Measured(d.get("bn_ghosts", 1), d.get("bn_folded_layers", 0), d.get("matmul_convs", 0),
                                dict(d.get("seconds_per_point") or {}), d.get("note", ""), d.get("cuda_graph"),
                                d.get("bn_ghosts_note"))
        workers = d.get("workers", 1)
        backed_off = None
        if any(key in d for key in AFTER_BACKOFF):
            bn_ghosts = measured.bn_ghosts if measured else None
            backed_off = BackedOff(tuple(d.get("backoffs", ())), d.get("batch_size_after_backoff", d["batch_size"]),
                                   d.get("max_group"), d.get("workers_after_backoff", workers),
                                   d.get("bn_ghosts_after_backoff", bn_ghosts))
        return cls(d["path"], d["batch_size"], d.get("group_size", 8), workers, d.get("chosen_by", ""),
                   d.get("tuned_for"), d.get("data"), measured, backed_off)

    def to_dict(self) -> dict[str, Any]:
        """The record as the file stores it."""
        out: dict[str, Any] = {"path": self.path, "batch_size": self.batch_size, "group_size": self.group_size,
                               "workers": self.workers, "chosen_by": self.chosen_by, "tuned_for": self.tuned_for,
                               "data": self.data}
        if self.measured is not None:
            out.update(dataclasses.asdict(self.measured))
        if self.backed_off is not None:
            b = self.backed_off
            out.update(backoffs=list(b.backoffs), batch_size_after_backoff=b.batch_size, max_group=b.max_group,
                       workers_after_backoff=b.workers, bn_ghosts_after_backoff=b.bn_ghosts)
        return out

    def settings(self, *, bn_ghosts: int = 1) -> EngineSettings:
        """The settings a resumed run starts from: the recorded ones, as the back-offs left
        them. ``bn_ghosts``: the ghost batches when the record has none (chosen by the user)."""
        ghosts = self.measured.bn_ghosts if self.measured else bn_ghosts
        b = self.backed_off
        if b is None:
            return EngineSettings(self.path, self.batch_size, self.group_size, None, self.workers, ghosts)
        return EngineSettings(self.path, b.batch_size, self.group_size, b.max_group, b.workers,
                              ghosts if b.bn_ghosts is None else b.bn_ghosts)

    def after(self, backoffs: list[str], settings: EngineSettings, ghosts_in_use: int) -> EngineRecord:
        """This record with more back-offs (added to an earlier run's) and the settings they
        led to."""
        before = self.backed_off.backoffs if self.backed_off else ()
        return dataclasses.replace(self, backed_off=BackedOff(
            (*before, *backoffs), settings.batch_size, settings.max_group, settings.workers, ghosts_in_use))
