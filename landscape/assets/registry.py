"""A small name registry that fails loudly, shared by the dataset and model registries.

A registry maps names to entries. A name ending in ``:`` registers a *family* of parametrised
names: ``imagefolder:`` accepts ``imagefolder:PATH``, ``timm:`` accepts ``timm:resnet18``; the
text after the first ``:`` is the argument. An unknown name raises a ``UserError`` that lists
every valid name, in the style of timm's ``create_model``. ``check_kwargs`` and ``call_checked``
check the keyword arguments an entry is called with (they may come from a file) before the call.

Example:
    >>> reg = Registry("colour")
    >>> reg.register("red", 0xFF0000)
    >>> reg.register("hex:", int, usage="hex:RRGGBB")
    >>> reg.resolve("red"), reg.resolve("hex:00FF00")
    ((16711680, None), (<class 'int'>, '00FF00'))
    >>> reg.resolve("blue")
    Traceback (most recent call last):
    landscape.errors.UserError: unknown colour 'blue'; expected one of red or hex:RRGGBB
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from landscape.errors import UserError, first_line

T = TypeVar("T")
FAMILY_SEP = ":"


class Registry(Generic[T]):
    """Names (and families of parametrised names) to entries of type ``T``.

    Args:
        kind: what the names name, for messages (``"dataset"``, ``"model"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._usages: dict[str, str] = {}  # family name -> how to spell one of its names

    def register(self, name: str, entry: T, *, usage: str | None = None,
                 overwrite: bool = False) -> None:
        """Add ``entry`` under ``name`` (a family when ``name`` ends in ``:``).

        Args:
            name: a plain name without ``:``, or a family name ending in ``:``.
            entry: what ``resolve`` gives back for the name.
            usage: for a family, how its names are spelt in messages (default ``NAME:ARG``).
            overwrite: replace an entry already registered under ``name``.

        Raises:
            ValueError: an empty or malformed name, or one already registered.
        """
        if not isinstance(name, str) or not name.rstrip(FAMILY_SEP) or FAMILY_SEP in name[:-1]:
            raise ValueError(f"a {self.kind} name must be a non-empty string without ':' "
                             f"(or a family name ending in one ':'), got {name!r}")
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered; "
                             "pass overwrite=True to replace it")
        self._entries[name] = entry
        if name.endswith(FAMILY_SEP):
            self._usages[name] = usage or f"{name}ARG"

    def names(self) -> list[str]:
        """The plain registered names, sorted (families are listed by ``usages``)."""
        return sorted(n for n in self._entries if not n.endswith(FAMILY_SEP))

    def usages(self) -> list[str]:
        """How the names of each registered family are spelt, e.g. ``imagefolder:PATH``."""
        return [self._usages[n] for n in sorted(self._usages)]

    def resolve(self, name: str) -> tuple[T, str | None]:
        """The entry for ``name`` and, for a family's name, its argument (else ``None``).

        Raises:
            UserError: an unknown name; the message lists the valid ones.
        """
        if isinstance(name, str):
            if name in self._entries and not name.endswith(FAMILY_SEP):
                return self._entries[name], None
            family, sep, arg = name.partition(FAMILY_SEP)
            if sep and family + sep in self._entries:
                return self._entries[family + sep], arg
        choices = " or ".join([", ".join(self.names()), *self.usages()])
        raise UserError(f"unknown {self.kind} {brief(name)}; expected one of {choices}")


def brief(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters: a value from a file, shown in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) from ``low`` to ``high``, else a ``UserError``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{name} must be an integer from {low} to {high}, got {brief(value)}")
    return value


def check_kwargs(kwargs: Any, what: str, *, reserved: Mapping[str, str] | None = None,
                 max_int: int | None = None) -> dict[str, Any]:
    """``kwargs`` as a dict, checked: names are identifiers and none is ``reserved`` (name ->
    why not), floats are finite and, with ``max_int``, integers at most that in size, at any
    depth of lists, tuples and dicts.

    Raises:
        UserError: naming ``what`` (e.g. ``"arch_kwargs of model 'resnet20'"``) and the argument.
    """
    if not isinstance(kwargs, Mapping):
        raise UserError(f"{what} must be a mapping of names to values, got {brief(kwargs)}")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise UserError(f"{what}: argument names must be identifiers, got {brief(key)}")
        if reserved and key in reserved:
            raise UserError(f"{what}: {key!r} is not accepted ({reserved[key]})")
        stack = [value]
        while stack:  # iterative: a file can nest deeper than the recursion limit
            v = stack.pop()
            if isinstance(v, (list, tuple)):
                stack.extend(v)
            elif isinstance(v, Mapping):
                stack.extend(v.values())
            elif isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"{what}: {key} must hold finite numbers, got {brief(value)}")
            elif (max_int is not None and isinstance(v, int) and not isinstance(v, bool)
                  and abs(v) > max_int):
                raise UserError(f"{what}: {key}={brief(value)} is out of range (integers up to "
                                f"{max_int} in size)")
    return dict(kwargs)


def call_checked(fn: Callable[..., Any], what: str, **kwargs: Any) -> Any:
    """``fn(**kwargs)``, once the names are checked against ``fn``'s signature (an argument it
    does not take is refused before the call); any error of the call is one ``UserError`` line.

    Args:
        what: what the call builds, for messages (``"model 'x' with arch_kwargs {...}"``).

    Raises:
        UserError: "bad arguments for WHAT: ..." with the names ``fn`` takes, or the call's error.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature to read (a builtin): the call itself tells
        signature = None
    try:
        if signature is not None:
            signature.bind(**kwargs)
    except TypeError as exc:
        takes = [p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        names = ", ".join(takes) or "no named arguments"
        raise UserError(f"bad arguments for {what}: {exc}; it takes {names}") from None
    try:
        return fn(**kwargs)
    except UserError as exc:
        raise UserError(f"{what}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: any error is reported in one line
        raise UserError(f"building {what} failed: {type(exc).__name__}: {first_line(exc)}") from None
