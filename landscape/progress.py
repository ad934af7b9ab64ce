"""The single progress helper used by library code.

Library functions never print. Long loops call `progress(...)`, which is silent unless the
application (the CLI) has switched bars on with `enable_progress(True)`.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

_ENABLED = False


def enable_progress(enabled: bool = True) -> None:
    """Switch progress bars on or off for the whole process (the CLI switches them on)."""
    global _ENABLED
    _ENABLED = enabled


def progress(*, total: int, desc: str, unit: str = "it", initial: int = 0) -> Any:
    """A tqdm bar (a context manager with `.update(n)`), disabled unless switched on."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=not _ENABLED,
        dynamic_ncols=True,
        leave=True,
    )
