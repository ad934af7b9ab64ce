"""The ensemble methods, found by name through one registry (``register_method``, ``get_method``).

Built in: ``local-de``, ``global-de``, ``sse`` and ``starsse`` (``finetunes``: the driver trains
every member), and the other local methods the StarSSE paper compares (its Section 5 /
Appendix): ``fge``, ``csgld``, ``swag``, ``kfac-laplace`` and ``spro``. Each of these starts
from the fine-tuned member 1 of its run (an ordinary Local DE fine-tune, or a given ``--init``
checkpoint) and produces members 2..K: FGE's and cSGLD's snapshots along one trajectory, or
SWAG's, KFAC-Laplace's and SPRO's samples (BN statistics recomputed). Every module holds its
options (``<NAME>Options``), its typed hyperparameters (``<NAME>Config.of(run_config)``
validates them), the pure maths, ``run(ctx)`` and its registered method class;
``ensembles.run`` drives them and ``ensembles.rundir`` owns the run-directory files.

A method of your own is a subclass of ``EnsembleMethod`` registered with ``register_method``
(see ``ensembles.methods.registry`` for an example).
"""

from __future__ import annotations

# the import order is the registration order: the order the names are listed in
from ensembles.methods import finetunes  # noqa: F401  (registers local-de ... starsse)
from ensembles.methods import fge, csgld, swag, laplace, spro  # noqa: F401  (register themselves)
from ensembles.methods.common import Context, LocalMethod, LocalOptions, steps_per_epoch
from ensembles.methods.csgld import CSGLDConfig, CSGLDOptions
from ensembles.methods.fge import FGEConfig, FGEOptions
from ensembles.methods.laplace import LaplaceConfig, LaplaceOptions
from ensembles.methods.registry import (
    EnsembleMethod,
    MemberPlan,
    NoOptions,
    finetune_plan,
    get_method,
    method_names,
    option_defaults,
    option_owners,
    register_method,
)
from ensembles.methods.spro import SPROConfig, SPROOptions
from ensembles.methods.swag import SWAGConfig, SWAGOptions, SwagMoments

METHODS = method_names()  # the built-in methods
LOCAL_METHODS = tuple(n for n in METHODS if isinstance(get_method(n), LocalMethod))

__all__ = ["CSGLDConfig", "CSGLDOptions", "Context", "EnsembleMethod", "FGEConfig", "FGEOptions",
           "LOCAL_METHODS", "LaplaceConfig", "LaplaceOptions", "LocalMethod", "LocalOptions",
           "METHODS", "MemberPlan", "NoOptions", "SPROConfig", "SPROOptions", "SWAGConfig",
           "SWAGOptions", "SwagMoments", "finetune_plan", "get_method", "method_names",
           "option_defaults", "option_owners", "register_method", "steps_per_epoch"]
