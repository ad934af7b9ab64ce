"""The demo's settings and names: which runs it trains, in which role each is compared."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from landscape.errors import UserError


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (the defaults are the measured 2-core CPU setting; tests shrink them).

    The target task is ``data`` (``mnist1d-transfer``: chosen by the criteria in the README
    before any claim was looked at); every choice is made on ``validation``, a split of the same
    distribution apart from the test set. Each of ``sources`` pre-trained checkpoints is one
    replicate of the whole comparison. SSE and StarSSE are trained at every cycle learning rate
    of ``cycle_lrs``: the first is the *local* regime (the fine-tuning rate), the last the
    *semi-local* one, and the *optimal* one is the rate whose ensemble of ``members`` is the most
    accurate on the validation split, averaged over the sources (ties: the smaller rate).
    """

    data: str = "mnist1d-transfer"
    validation: str = "mnist1d-transfer-val"
    ood: str | None = "mnist1d-transfer-c"
    sources: int = 3
    pre_epochs: int = 6
    pre_lr: float = 0.05
    width: int = 16
    members: int = 5
    epochs: int = 10
    lr: float = 0.02
    cycle_epochs: int = 10
    cycle_lrs: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7)
    grid: int = 15
    points: int = 11
    plane_train_subset: int | None = None
    curve_epochs: int = 10
    curve_lr: float = 0.05

    def __post_init__(self) -> None:
        if len(self.cycle_lrs) < 2 or list(self.cycle_lrs) != sorted(set(self.cycle_lrs)):
            raise UserError(f"cycle_lrs must be at least two increasing rates, got {self.cycle_lrs!r}")
        if self.sources < 1 or self.members < 2:
            raise UserError("the demo needs at least one source and two members")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cycle_lrs": list(self.cycle_lrs)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DemoConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k == "cycle_lrs" else v for k, v in doc.items() if k in names})


METHODS = ("sse", "starsse")
REGIMES = ("local", "optimal", "semilocal")
# every role the comparison names, in the report's order
ROLES = ("local-de", "global-de", *(f"{m}-{r}" for m in METHODS for r in REGIMES))
PLANE_ROLES = ("sse-semilocal", "starsse-semilocal")
CURVE_ROLE = "sse-semilocal"  # the curve joins its two most distant members (source 0)
GLOBAL_RUN = "global-de"


def source_name(replicate: int) -> str:
    return f"source-{replicate}"


def cell_run(replicate: int, method: str, cycle_lr: float) -> str:
    """The run of ``method`` at ``cycle_lr`` from source ``replicate`` (its folder under runs/)."""
    return f"{source_name(replicate)}/{method}-lr{cycle_lr:g}"


def local_de_run(replicate: int) -> str:
    return f"{source_name(replicate)}/local-de"


def role_runs(config: DemoConfig, chosen: dict[str, float]) -> dict[str, list[str]]:
    """Each role's runs, one per replicate (Global DE: one run, its members from every source);
    ``chosen``: the optimal cycle rate of each method."""
    rates = {"local": lambda m: config.cycle_lrs[0], "optimal": lambda m: chosen[m],
             "semilocal": lambda m: config.cycle_lrs[-1]}
    out = {"local-de": [local_de_run(r) for r in range(config.sources)], "global-de": [GLOBAL_RUN]}
    for method in METHODS:
        for regime in REGIMES:
            out[f"{method}-{regime}"] = [cell_run(r, method, rates[regime](method)) for r in range(config.sources)]
    return out


def flat(run: str) -> str:
    """A run's name as one file name (``source-0/sse-lr0.1`` -> ``source-0.sse-lr0.1``)."""
    return run.replace("/", ".")


def run_path(root: Path, run: str) -> Path:
    return root / "runs" / run
