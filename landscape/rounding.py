"""Numbers written to the precision their interval supports (the report's tables, the claims)."""

from __future__ import annotations

import math


def interval_digits(low: float, high: float) -> int:
    """Decimals that an interval [low, high] supports: down to the first significant digit of its
    half-width, or the second where that digit is a 1 (+-0.7 -> 1, +-0.04 -> 2, +-1.4 -> 1), at
    most 4; 2 where it has no width (the two decimals of one test sample in 10 000)."""
    half = (high - low) / 2
    if not (math.isfinite(half) and half > 0):
        return 2
    exp = math.floor(math.log10(half))
    return max(0, min(4, -exp + (half / 10**exp < 2)))


def rounded(v: float, places: int, signed: bool = False) -> str:
    """``v`` to ``places`` decimals, a rounded zero without its minus (0.00, never -0.00)."""
    fmt = f"{{:{'+' if signed else ''}.{places}f}}"
    text = fmt.format(v)
    return fmt.format(0.0) if float(text) == 0 else text
