"""The single progress helper used by library code.

Library functions never print. Long loops call `progress(...)`, which is silent unless the
application (the CLI) has switched bars on with `enable_progress(True)`.

Every bar update is also where an interrupt asked for with `request_interrupt()` (the CLI's
SIGINT/SIGTERM handler) is raised as ``KeyboardInterrupt``: Python drops an exception raised by a
signal handler while it runs a finalizer or weakref callback, and this makes sure the run still
stops after the work in hand is saved.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

_ENABLED = False
_INTERRUPTED = False


def enable_progress(enabled: bool = True) -> None:
    """Switch progress bars on or off for the whole process (the CLI switches them on)."""
    global _ENABLED
    _ENABLED = enabled


def request_interrupt(requested: bool = True) -> None:
    """Ask every running loop to stop at its next progress update (False clears the request)."""
    global _INTERRUPTED
    _INTERRUPTED = requested


def interrupt_requested() -> bool:
    """Whether an interrupt was asked for (an error raised meanwhile may be its side effect)."""
    return _INTERRUPTED


def check_interrupt() -> None:
    if _INTERRUPTED:
        raise KeyboardInterrupt


class _Bar(tqdm):
    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        check_interrupt()
        return shown


def progress(*, total: int, desc: str, unit: str = "it", initial: int = 0) -> Any:
    """A tqdm bar (a context manager with `.update(n)`), disabled unless switched on; its
    updates raise ``KeyboardInterrupt`` once an interrupt was requested."""
    return _Bar(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=not _ENABLED,
        dynamic_ncols=True,
        leave=True,
    )
