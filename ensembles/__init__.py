"""ensembles: training and judging ensembles fine-tuned from a pre-trained checkpoint.

Example:
    >>> from ensembles import RunConfig, train, evaluate
    >>> cfg = RunConfig("starsse", ("pre.safetensors",), "mnist1d", members=5, epochs=10,
    ...                 lr=0.02, cycle_epochs=5, cycle_lr=0.04)
    >>> run = train(cfg, "runs/starsse")
    >>> report = evaluate(run, ood="mnist1d-c")
    >>> report.rows[-1].accuracy, report.soup_accuracy[-1]
"""

from ensembles.config import RunConfig
from ensembles.curves import CurveFit, fit_curve
from ensembles.evaluate import RunReport, compare, evaluate
from ensembles.manifest import Run, read_run
from ensembles.methods import (
    LOCAL_METHODS,
    METHODS,
    EnsembleMethod,
    MemberPlan,
    get_method,
    method_names,
    register_method,
)
from ensembles.metrics import EnsembleRow, accuracy, brier, diversity, ece, ensemble_rows, nll
from ensembles.presets import load_preset, preset_names
from ensembles.run import train
from ensembles.rundir import RunDir
from ensembles.schedules import cosine_lr
from ensembles.soup import uniform_soup
from ensembles.sweep import SweepResult, sweep
from ensembles.training import TrainConfig, TrainResult, finetune, fit, predict_probs, pretrain

__all__ = [
    "LOCAL_METHODS",
    "METHODS",
    "CurveFit",
    "EnsembleMethod",
    "EnsembleRow",
    "MemberPlan",
    "Run",
    "RunConfig",
    "RunDir",
    "RunReport",
    "SweepResult",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "brier",
    "compare",
    "cosine_lr",
    "diversity",
    "ece",
    "ensemble_rows",
    "evaluate",
    "finetune",
    "fit_curve",
    "fit",
    "get_method",
    "load_preset",
    "method_names",
    "nll",
    "predict_probs",
    "preset_names",
    "pretrain",
    "read_run",
    "register_method",
    "sweep",
    "train",
    "uniform_soup",
]
