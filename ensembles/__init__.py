"""ensembles: training and judging ensembles fine-tuned from a pre-trained checkpoint.

Example:
    >>> from ensembles import RunConfig, train, evaluate
    >>> cfg = RunConfig("starsse", ("pre.safetensors",), "mnist1d", members=5, epochs=10,
    ...                 lr=0.02, cycle_epochs=5, cycle_lr=0.04)
    >>> run = train(cfg, "runs/starsse")
    >>> report = evaluate(run, ood="mnist1d-c")
    >>> report.rows[-1].accuracy, report.soup_accuracy[-1]
"""

from ensembles.evaluate import RunReport, evaluate
from ensembles.methods import LOCAL_METHODS
from ensembles.metrics import EnsembleRow, accuracy, brier, diversity, ece, ensemble_rows, nll
from ensembles.presets import load_preset, preset_names
from ensembles.run import METHODS, Run, RunConfig, read_run, train
from ensembles.schedules import cosine_lr
from ensembles.soup import uniform_soup
from ensembles.sweep import SweepResult, sweep
from ensembles.training import TrainConfig, TrainResult, finetune, fit, predict_probs, pretrain

__all__ = [
    "LOCAL_METHODS",
    "METHODS",
    "EnsembleRow",
    "Run",
    "RunConfig",
    "RunReport",
    "SweepResult",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "brier",
    "cosine_lr",
    "diversity",
    "ece",
    "ensemble_rows",
    "evaluate",
    "finetune",
    "fit",
    "load_preset",
    "nll",
    "predict_probs",
    "preset_names",
    "pretrain",
    "read_run",
    "sweep",
    "train",
    "uniform_soup",
]
