"""The settings the engine runs with: what the tuner and the out-of-memory back-off choose.

None of them changes the numbers beyond float rounding (BN statistics always use batches of the
fixed ``bn_batch_size``), so they are not part of a result file's identity; they are recorded
in its runtime (``landscape.grid.record.EngineRecord``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

STRATEGIES = ("auto", "loop", "vmap")


@dataclass(frozen=True)
class EngineSettings:
    """One complete choice of the engine's settings.

    Attributes:
        strategy: ``loop`` (a private model per point, loaded in turn) or ``vmap`` (the points
            stacked and mapped over with ``torch.func.vmap``).
        batch_size: samples a forward (evaluation batches; BN batches are fixed).
        group_size: points evaluated together (one call of the evaluator).
        max_group: after out-of-memory back-offs, the largest group that fits (None: any).
        workers: points the loop strategy evaluates at once, each in a thread of its own.
        bn_ghosts: fixed BN batches a forward in the GPU's BN pass ("ghost batches").
    """

    strategy: str = "loop"
    batch_size: int = 512  # GridSettings' default too
    group_size: int = 8
    max_group: int | None = None
    workers: int = 1
    bn_ghosts: int = 1

    def but(self, **changes: object) -> EngineSettings:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def at_once(self, points: int) -> int:
        """Points that run at the same time in a group of ``points``."""
        return min(self.workers, points) if self.strategy == "loop" else 1


@dataclass(frozen=True)
class Tuning:
    """What the tuner chose and the evidence: seconds per point of every candidate it timed
    (keyed ``loop``, ``loop, 2 workers``, ``vmap``, ``batch=N``, ``bn_ghosts=K``, ``group=K``),
    a note on the candidates it put out, and the out-of-memory back-offs it kept."""

    settings: EngineSettings
    seconds_per_point: dict[str, float] = field(default_factory=dict)
    note: str = ""
    backoffs: tuple[str, ...] = ()
