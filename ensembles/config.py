"""The configuration of an ensemble run: the shared settings and the method's own options."""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from ensembles.methods import METHODS, get_method, method_names, option_defaults, option_owners
from ensembles.methods.registry import MemberPlan
from ensembles.rundir import is_int, is_number, short_repr
from ensembles.training import TrainConfig
from landscape.assets.images import ImageTransform
from landscape.errors import UserError


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides an ensemble run's members.

    ``pretrained_arch``, ``pretrained_num_classes`` and ``pretrained_arch_kwargs`` describe plain
    ``.pt``/``.ckpt`` state dicts given as pre-trained checkpoints (``.safetensors`` files describe
    themselves); ``pretrained_state_dict_key`` and ``pretrained_strip_prefix`` say where in such a
    file the state dict is (``landscape.load_checkpoint``). ``image`` holds an image dataset's
    transform settings (``landscape.ImageTransform`` fields; unset ones from the dataset's and the
    model's defaults). The recipe fields
    (optimizer ... amp) are those of ``TrainConfig``. ``cycle_epochs`` and ``cycle_lr`` are the
    cycles of SSE and StarSSE; the local methods read them too (FGE: cycle length and peak rate;
    cSGLD: cycle length and alpha_0; SWAG: collection epochs and SWA rate; SPRO: epochs and rate
    per vertex). ``options`` is the method's own dataclass (``get_method(method).options``; None:
    its defaults); ``RunConfig.from_flat`` builds a config from flat names such as
    ``swag_rank=3``.

    Example:
        >>> RunConfig("starsse", ("pre.safetensors",), "mnist1d", members=5, epochs=10,
        ...           lr=0.02, cycle_epochs=5, cycle_lr=0.04)
    """

    method: str
    pretrained: tuple[str, ...]
    data: str
    members: int
    epochs: int
    lr: float
    wd: float = 5e-4
    cycle_epochs: int | None = None
    cycle_lr: float | None = None
    seed: int = 0
    batch_size: int = 128
    momentum: float = 0.9
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    grad_clip: float | None = None
    amp: bool = False
    pretrained_arch: str | None = None
    pretrained_num_classes: int | None = None
    pretrained_arch_kwargs: dict | None = None
    pretrained_state_dict_key: str | None = None
    pretrained_strip_prefix: str | None = None
    image: dict | None = None
    options: Any = None

    def __post_init__(self) -> None:
        # ``pretrained`` and ``data`` may also hold objects (``train`` names them)
        check_types(self, skip=("pretrained", "data", "options"))
        method = get_method(self.method)
        if self.members < 1:
            raise UserError(f"members must be a positive integer, got {self.members!r}")
        if not 0 <= self.seed <= SEED_LIMIT - self.members:
            raise UserError(f"seed must be in 0..2**63 - members (member i is seeded with seed + i - 1, "
                            f"which torch and numpy must accept), got {self.seed}")
        if self.pretrained_num_classes is not None and self.pretrained_num_classes < 1:
            raise UserError(f"pretrained_num_classes must be positive, got {self.pretrained_num_classes}")
        if self.options is None:
            object.__setattr__(self, "options", method.options())  # the method's defaults
        elif type(self.options) is not method.options:
            raise UserError(f"{self.method} takes options {method.options.__name__}, got "
                            f"{type(self.options).__name__}")
        check_types(self.options)
        if not self.pretrained and self.init is None:
            raise UserError("a run needs --pretrained CHECKPOINT"
                            + (" (or --init FINETUNED)" if _has_init(method.options) else ""))
        if self.image is not None:
            known = [f.name for f in fields(ImageTransform)]
            if unknown := [k for k in self.image if k not in known]:
                raise UserError(f"image has unknown settings {short_repr(unknown)}; known: {', '.join(known)}")
            ImageTransform(**self.image)  # a bad setting fails here, in one line
        method.validate(self)
        # validates the recipe (as member 1 would be trained without --init)
        self.train_config(MemberPlan(1, "pretrained:0", self.epochs, self.lr, self.seed, True))

    @property
    def init(self) -> str | None:
        """The fine-tuned checkpoint used as member 1 (a local method's ``init`` option)."""
        return getattr(self.options, "init", None)

    @classmethod
    def from_flat(cls, method: str, pretrained: Sequence[str] = (), **settings: Any) -> RunConfig:
        """A config from flat settings, named as the CLI flags and the manifest's keys: the
        shared fields, and options such as ``swag_rank=3`` or ``init="ft.safetensors"``, which go
        into the method's options. An option of another method is ignored at its default and
        refused otherwise.

        Raises:
            UserError: unknown method, another method's option, or a bad value.
            TypeError: a setting that no registered method knows.

        Example:
            >>> RunConfig.from_flat("swag", ("pre.safetensors",), data="mnist1d", members=5,
            ...                     epochs=10, lr=0.02, cycle_epochs=5, cycle_lr=0.04, swag_rank=10)
        """
        spec = get_method(method)
        own = {f.name for f in fields(spec.options)}
        shared = {f.name for f in fields(cls)} - {"method", "pretrained", "options"}
        defaults = option_defaults(method_names())
        unknown = set(settings) - shared - set(defaults)
        if unknown:
            raise TypeError(f"RunConfig.from_flat got unknown settings {sorted(unknown)}")
        for name, default in defaults.items():  # in the options' order: the first one is named
            if name in settings and name not in own and settings[name] != default:
                raise UserError(f"--{name.replace('_', '-')} applies to --method "
                                f"{' or '.join(option_owners(name))}, not {method}")
        options = spec.options(**{k: v for k, v in settings.items() if k in own})
        return cls(method, tuple(pretrained), options=options,
                   **{k: v for k, v in settings.items() if k in shared})

    def flat(self) -> dict[str, Any]:
        """The flat settings (``from_flat``'s names), as the manifest records them: the shared
        fields, every built-in method's options (at their defaults), then this method's own."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        return {**doc, **option_defaults(METHODS), **asdict(self.options)}

    @staticmethod
    def flat_defaults(method: str) -> dict[str, Any]:
        """The defaults of ``flat()`` for ``method`` (the keys a manifest may lack)."""
        shared = {f.name: f.default for f in fields(RunConfig)
                  if f.name != "options" and f.default is not MISSING}
        return {**shared, **option_defaults(METHODS), **asdict(get_method(method).options())}

    def train_config(self, plan: MemberPlan) -> TrainConfig:
        """The optimisation settings of one member. Warm-up applies to the E-epoch fine-tunes
        only; later SSE/StarSSE cycles restart the cosine directly at ``cycle_lr``."""
        return TrainConfig(
            epochs=plan.epochs, lr=plan.lr, wd=self.wd, momentum=self.momentum,
            batch_size=self.batch_size, seed=plan.seed, optimizer=self.optimizer,
            warmup_epochs=self.warmup_epochs if plan.new_head else 0,
            label_smoothing=self.label_smoothing, mixup=self.mixup, cutmix=self.cutmix,
            grad_clip=self.grad_clip, amp=self.amp,
        )


def _has_init(options: type) -> bool:
    return "init" in {f.name for f in fields(options)}


# ----------------------------------------------------------------------------- value types

SEED_LIMIT = 2**63  # torch.manual_seed takes < 2**64 and numpy >= 0; the methods add offsets < 10**4


_KINDS: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    int: ("an integer", is_int),
    float: ("a finite number", is_number),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    str: ("a string", lambda v: isinstance(v, str)),
    dict: ("a table of settings", lambda v: isinstance(v, dict)),
    type(None): ("null", lambda v: v is None),
}


def expected_type(hint: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """What an annotation asks for, in words, and a test of a value; None for annotations other
    than int, float, bool, str, dict, None, their unions and ``tuple[X, ...]`` (not checked)."""
    if hint in _KINDS:
        return _KINDS[hint]
    args = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType):
        kinds = [expected_type(a) for a in args]
        if any(k is None for k in kinds):
            return None
        return " or ".join(k[0] for k in kinds), lambda v: any(k[1](v) for k in kinds)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = expected_type(args[0])
        if item is None:
            return None
        return (f"a list, each {item[0]}",
                lambda v: isinstance(v, (tuple, list)) and all(item[1](x) for x in v))
    return None


def type_error(name: str, value: Any, hint: Any) -> str | None:
    """``"<name> must be <type>, got <value>"`` when ``value`` does not fit the annotation
    ``hint`` (see ``expected_type``), else None."""
    kind = expected_type(hint)
    if kind is None or kind[1](value):
        return None
    return f"{name} must be {kind[0]}, got {short_repr(value)}"


@cache
def field_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (empty where they cannot be resolved)."""
    try:
        return get_type_hints(cls)
    except Exception:  # a method's options annotated with names not importable here
        return {}


def check_types(obj: Any, skip: Sequence[str] = ()) -> None:
    """Every field of the dataclass ``obj`` fits its annotation.

    Raises:
        UserError: the first field that does not, with the expected type.
    """
    hints = field_hints(type(obj))
    for f in fields(obj):
        if f.name not in skip and f.name in hints:
            if problem := type_error(f.name, getattr(obj, f.name), hints[f.name]):
                raise UserError(problem)
