"""The configuration of an ensemble run: the shared settings and the method's own options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from ensembles.methods import METHODS, get_method, method_names, option_defaults, option_owners
from ensembles.methods.registry import MemberPlan
from ensembles.training import TrainConfig
from landscape.errors import UserError


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides an ensemble run's members.

    ``pretrained_arch`` and ``pretrained_num_classes`` describe plain ``.pt`` state dicts given
    as pre-trained checkpoints (``.safetensors`` files describe themselves). The recipe fields
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
    options: Any = None

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if not isinstance(self.members, int) or self.members < 1:
            raise UserError(f"members must be a positive integer, got {self.members!r}")
        if self.options is None:
            object.__setattr__(self, "options", method.options())  # the method's defaults
        elif type(self.options) is not method.options:
            raise UserError(f"{self.method} takes options {method.options.__name__}, got "
                            f"{type(self.options).__name__}")
        if not self.pretrained and self.init is None:
            raise UserError("a run needs --pretrained CHECKPOINT"
                            + (" (or --init FINETUNED)" if _has_init(method.options) else ""))
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
