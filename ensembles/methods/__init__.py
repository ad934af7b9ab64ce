"""The other local methods the StarSSE paper compares (its Section 5 / Appendix): FGE, cSGLD,
SWAG, KFAC-Laplace and SPRO.

Each starts from the fine-tuned member 1 of its run (an ordinary Local DE fine-tune, or a given
``--init`` checkpoint) and produces members 2..K: FGE's and cSGLD's snapshots along one
trajectory, or SWAG's, KFAC-Laplace's and SPRO's samples (BN statistics recomputed). Every
module holds its typed config (``<NAME>Config.of(run_config)`` validates it), the pure maths and
``run(ctx)``; ``ensembles.run`` dispatches to them and owns the run-directory contract.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from ensembles.methods import csgld, fge, laplace, spro, swag
from ensembles.methods.common import Context, steps_per_epoch
from ensembles.methods.csgld import CSGLDConfig
from ensembles.methods.fge import FGEConfig
from ensembles.methods.laplace import LaplaceConfig
from ensembles.methods.spro import SPROConfig
from ensembles.methods.swag import SWAGConfig, SwagMoments
from landscape.errors import UserError

_MODULES: dict[str, ModuleType] = {"fge": fge, "csgld": csgld, "swag": swag,
                                   "kfac-laplace": laplace, "spro": spro}
_CONFIGS: dict[str, Callable[[Any], Any]] = {"fge": FGEConfig.of, "csgld": CSGLDConfig.of,
                                             "swag": SWAGConfig.of, "kfac-laplace": LaplaceConfig.of,
                                             "spro": SPROConfig.of}
LOCAL_METHODS = tuple(_MODULES)

# RunConfig fields that only some methods read: giving them to another method is a mistake.
OWNED_FIELDS: dict[str, tuple[str, ...]] = {
    "init": LOCAL_METHODS,
    "fge_min_lr": ("fge", "swag"),
    "csgld_temperature": ("csgld",),
    "csgld_exploration": ("csgld",),
    "swag_rank": ("swag",),
    "swag_collect": ("swag",),
    "swag_schedule": ("swag",),
    "sample_scale": ("swag", "kfac-laplace"),
    "laplace_prior_precision": ("kfac-laplace",),
    "spro_vertices": ("spro",),
    "spro_volume_reg": ("spro",),
}


def method_config(run_config: Any) -> Any:
    """The typed, validated config of a local method (raises UserError on bad settings)."""
    try:
        return _CONFIGS[run_config.method](run_config)
    except KeyError:
        raise UserError(f"unknown local method {run_config.method!r}; expected one of "
                        f"{', '.join(LOCAL_METHODS)}") from None


def check_method(run_config: Any, train_set) -> None:
    """Refuse, before member 1 is trained, settings that do not fit the train split (e.g. more
    SWAG collections per epoch than batches)."""
    check = getattr(_MODULES[run_config.method], "check", None)
    if check is not None:
        check(run_config, steps_per_epoch(train_set, run_config.batch_size))


def run_method(ctx: Context) -> None:
    """Produce members 2..K of ``ctx.config.method`` into the run directory."""
    if ctx.config.method not in _MODULES:
        raise UserError(f"unknown local method {ctx.config.method!r}; expected one of "
                        f"{', '.join(LOCAL_METHODS)}")
    _MODULES[ctx.config.method].run(ctx)


__all__ = ["CSGLDConfig", "Context", "FGEConfig", "LOCAL_METHODS", "LaplaceConfig", "OWNED_FIELDS",
           "SPROConfig", "SWAGConfig", "SwagMoments", "check_method", "method_config", "run_method"]
