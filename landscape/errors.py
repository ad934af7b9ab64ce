"""The one exception type for bad user input.

`UserError` is a `ValueError`, so callers that catch `ValueError` keep working; the CLI shows it
as one line and exits with code 2. Anything else that escapes is an internal error (exit code 1).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: the message says what was expected and how to fix it."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for one-line errors about a user's own code."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else "(no message)"
