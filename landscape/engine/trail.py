"""The trail of one run of the evaluator: the settings it runs with, as its out-of-memory
back-offs change them, and the record of each back-off.

Whoever runs an evaluation owns its trail: the evaluator's ``evaluate`` keeps its own settings
in one, the tuner gives each candidate a fresh one. What a trail learnt survives an error (an
interrupt, a tuner's time limit) raised later in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from landscape.engine.settings import EngineSettings

T = TypeVar("T")


@dataclass
class Trail:
    """Settings as the back-offs left them, and one line per back-off, in order."""

    settings: EngineSettings
    backoffs: list[str] = field(default_factory=list)

    def step(self, settings: EngineSettings, message: str) -> None:
        """A back-off: ``settings`` from now on, for the reason ``message``."""
        self.settings = settings
        self.backoffs.append(message)


def head(items: Sequence[T] | None, n: int) -> list[T] | None:
    """The first ``n`` per-point items (BN buffers), or None."""
    return None if items is None else list(items[:n])


def part(items: Sequence[T] | None, start: int, stop: int | None = None) -> list[T] | None:
    """Per-point items ``start:stop`` (BN buffers), or None."""
    return None if items is None else list(items[start:stop])
