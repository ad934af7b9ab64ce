"""A small name registry that fails loudly, shared by the dataset and model registries.

A registry maps names to entries. A name ending in ``:`` registers a *family* of parametrised
names: ``imagefolder:`` accepts ``imagefolder:PATH``, ``timm:`` accepts ``timm:resnet18``; the
text after the first ``:`` is the argument. An unknown name raises a ``UserError`` that lists
every valid name, in the style of timm's ``create_model``.

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

from typing import Generic, TypeVar

from landscape.errors import UserError

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
        raise UserError(f"unknown {self.kind} {name!r}; expected one of {choices}")
