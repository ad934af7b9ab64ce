"""The out-of-memory back-off, as a small pure decision.

An evaluation that runs out of memory is retried with settings that need less: first one fixed
BN batch a forward instead of ghost batches (when the BN pass failed with them), then half the
points at once on the loop strategy, then half the evaluation batch (which cannot help the BN
pass, whose batches are fixed), then the group of points split in two. None of these changes the
numbers. When nothing is left to give, the error says what to change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from landscape.engine.settings import EngineSettings
from landscape.errors import UserError

_MARK = "landscape_in_bn_pass"


@dataclass(frozen=True)
class BackOff:
    """What to do after running out of memory: retry with ``settings`` (the whole group, or,
    with ``split``, each half of it), and the line that says so in the record."""

    settings: EngineSettings
    message: str
    split: bool = False
    drop_ghosts: bool = False  # the BN pass runs one fixed batch a forward from now on


def back_off(settings: EngineSettings, points: int, exc: BaseException, *, ghosts_in_use: int,
             bn_batch_size: int) -> BackOff:
    """The next settings after ``exc`` (out of memory) in a group of ``points`` points.

    Raises:
        UserError: even one point with a batch of one sample does not fit (or, in the BN pass,
            one point with batches of ``bn_batch_size``).
    """
    in_bn = in_bn_pass(exc)
    if in_bn and settings.strategy == "loop" and ghosts_in_use > 1:  # k times the BN pass's activations
        return BackOff(settings.but(bn_ghosts=1), "out of memory: the BN pass runs one fixed batch a forward "
                       "from now on", drop_ghosts=True)
    running = settings.at_once(points)
    if running > 1:  # fewer points at once need fewer activations (and CUDA graphs)
        workers = running // 2
        return BackOff(settings.but(workers=workers),
                       f"out of memory: {workers} point{'s' * (workers > 1)} at once from now on")
    if in_bn:  # BN statistics use fixed batches: only fewer points at once help
        if points == 1:
            raise UserError(
                f"out of memory in the BN statistics pass (batches of --bn-batch-size {bn_batch_size}) "
                "even for one point; use another device, or a smaller --bn-batch-size (which changes "
                "the numbers)") from exc
        return _split(settings, points)
    if settings.batch_size > 1:
        batch = settings.batch_size // 2
        return BackOff(settings.but(batch_size=batch), f"out of memory: evaluation batch halved to {batch}")
    if points == 1:
        raise UserError("out of memory even with one point and a batch of one sample; "
                        "use a smaller --train-subset/--test-subset or another device") from exc
    return _split(settings, points)


def _split(settings: EngineSettings, points: int) -> BackOff:
    """The group in two halves; later groups are cut to that size from the start."""
    half = points // 2
    largest = min(settings.max_group or half, half)
    return BackOff(settings.but(max_group=largest), f"out of memory: group of {points} points split in two "
                   f"(groups of at most {largest} from now on)", split=True)


@contextlib.contextmanager
def marking_the_bn_pass() -> Iterator[None]:
    """Marks an error raised inside a BN statistics pass, for ``back_off`` (``in_bn_pass``)."""
    try:
        yield
    except BaseException as exc:
        mark_bn_pass(exc)
        raise


def mark_bn_pass(exc: BaseException) -> None:
    """Mark ``exc`` as raised in a BN statistics pass."""
    with contextlib.suppress(AttributeError, TypeError):  # an exception type without a __dict__
        setattr(exc, _MARK, True)


def in_bn_pass(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside a BN statistics pass."""
    return bool(getattr(exc, _MARK, False))
