"""The registry of ensemble methods: every method, built in or yours, is found by its name here.

A method is a subclass of ``EnsembleMethod`` registered with ``register_method``. It says which
members the training driver (``ensembles.run.train``) trains and from where (``phases`` and
``member_plan``: fine-tunes of a pre-trained checkpoint, or cycles from an earlier member), may
make further members itself (``make_members``, as the local methods FGE ... SPRO do), and owns
its settings as a frozen dataclass (``options``). The option names are flat names, spelled as
the CLI flags and the manifest's keys (``swag_rank`` is ``--swag-rank``); every option has a
default. ``RunConfig.from_flat`` sorts flat settings into the method's options, and refuses an
option of another method (``--swag-rank applies to --method swag, not fge``).

Example (a new method: K fine-tunes, each at its own learning rate):
    >>> from dataclasses import dataclass
    >>> from ensembles import RunConfig, train
    >>> from ensembles.methods import EnsembleMethod, MemberPlan, register_method
    >>> from landscape.errors import UserError
    >>>
    >>> @dataclass(frozen=True)
    ... class LRLadderOptions:
    ...     ladder_factor: float = 2.0       # member i trains at lr * factor ** (i - 1)
    ...
    ...     def __post_init__(self) -> None:
    ...         if not self.ladder_factor > 0:
    ...             raise UserError(f"ladder_factor must be positive, got {self.ladder_factor!r}")
    >>>
    >>> @register_method("lr-ladder")
    ... class LRLadder(EnsembleMethod):
    ...     options = LRLadderOptions
    ...
    ...     def phases(self, config):
    ...         return [list(range(1, config.members + 1))]   # independent fine-tunes
    ...
    ...     def member_plan(self, config, index):
    ...         lr = config.lr * config.options.ladder_factor ** (index - 1)
    ...         return MemberPlan(index, "pretrained:0", config.epochs, lr,
    ...                           config.seed + index - 1, new_head=True)
    >>>
    >>> cfg = RunConfig.from_flat("lr-ladder", ("pre.safetensors",), data="mnist1d", members=3,
    ...                           epochs=10, lr=0.01, ladder_factor=1.5)
    >>> run = train(cfg, "runs/lr-ladder")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from landscape.errors import UserError

if TYPE_CHECKING:
    from ensembles.config import RunConfig
    from ensembles.methods.common import Context


@dataclass(frozen=True)
class NoOptions:
    """The options of a method that has none of its own."""


@dataclass(frozen=True)
class MemberPlan:
    """Member ``index`` starts from ``start`` (``pretrained:<i>``, ``member:<j>`` or ``init``)
    and trains ``epochs`` epochs of cosine from ``lr``; fine-tunes from a pre-trained model get a
    new head."""

    index: int
    start: str
    epochs: int
    lr: float
    seed: int
    new_head: bool


class EnsembleMethod:
    """How one method makes the members of a run (numbered from 1; member i uses seed
    ``seed + i - 1``). Override what differs from the default: one fine-tune per member from
    the one pre-trained checkpoint, all independent of each other.

    Attributes:
        name: the registered name (set by ``register_method``).
        options: the frozen dataclass of the method's own settings (every field has a default).
        one_process: the method makes its members one after another (refused under torchrun).
    """

    name: str = ""
    options: type = NoOptions
    one_process: bool = False

    def validate(self, config: RunConfig) -> None:
        """Refuse settings that do not fit the method (raise a one-line ``UserError``)."""
        if len(config.pretrained) != 1 and config.init is None:
            raise UserError(f"{self.name} starts from one pre-trained checkpoint, got "
                            f"{len(config.pretrained)}")

    def phases(self, config: RunConfig) -> list[list[int]]:
        """The members the driver trains, in dependency order: the members of one phase are
        independent of each other (torchrun shares them among its processes)."""
        return [list(range(1, config.members + 1))]

    def member_plan(self, config: RunConfig, index: int) -> MemberPlan:
        """Where member ``index`` (1-based, one of ``phases``) starts and how it trains."""
        return finetune_plan(config, index)

    def before_training(self, config: RunConfig, data_root: str | None) -> None:
        """Refuse, before member 1 is trained, settings that do not fit the data."""

    def make_members(self, ctx: Context) -> None:
        """Make the members that ``phases`` does not list, from member 1 (written through
        ``ctx.write``); called only when ``phases`` lists fewer than K members."""


def finetune_plan(config: RunConfig, index: int, source: int = 0) -> MemberPlan:
    """Member ``index`` fine-tuned for E epochs at ``lr`` from pre-trained checkpoint ``source``
    with a new head."""
    return MemberPlan(index, f"pretrained:{source}", config.epochs, config.lr,
                      config.seed + index - 1, True)


M = TypeVar("M", bound=type[EnsembleMethod])
_METHODS: dict[str, EnsembleMethod] = {}


def register_method(name: str) -> Callable[[M], M]:
    """Register an ``EnsembleMethod`` subclass under ``name`` (a class decorator, as timm's
    ``register_model``); see the module docstring for an example.

    Raises:
        ValueError: ``name`` is taken, or ``options`` is not a frozen dataclass whose fields
            all have defaults.
    """
    def register(cls: M) -> M:
        if name in _METHODS:
            raise ValueError(f"an ensemble method {name!r} is already registered")
        _check_options(name, cls.options)
        method = cls()
        method.name = name
        _METHODS[name] = method
        return cls

    return register


def get_method(name: str) -> EnsembleMethod:
    """The method registered as ``name``.

    Raises:
        UserError: no such method (the message lists the registered names).
    """
    try:
        return _METHODS[name]
    except KeyError:
        raise UserError(f"unknown method {name!r}; expected one of "
                        f"{', '.join(method_names())}") from None


def method_names() -> tuple[str, ...]:
    """The registered names, in the order they were registered."""
    return tuple(_METHODS)


def option_defaults(names: Iterable[str]) -> dict[str, Any]:
    """The default of every option of the methods ``names`` (flat names, first owner's order)."""
    out: dict[str, Any] = {}
    for name in names:
        out.update({k: v for k, v in asdict(get_method(name).options()).items() if k not in out})
    return out


def option_owners(option: str) -> tuple[str, ...]:
    """The registered methods that have the option ``option``."""
    return tuple(n for n, m in _METHODS.items() if option in {f.name for f in fields(m.options)})


def _check_options(name: str, options: type) -> None:
    params = getattr(options, "__dataclass_params__", None)
    if not is_dataclass(options) or not params.frozen:
        raise ValueError(f"method {name!r}: options must be a frozen dataclass, got {options!r}")
    missing = [f.name for f in fields(options)
               if f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"method {name!r}: every option needs a default; {missing} have none")
