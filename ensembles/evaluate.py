"""Judging ensemble runs: quality by ensemble size, diversity, soups, out of distribution
(the result, ``RunReport``, and ``compare`` live in ``ensembles.judged``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ensembles.inputs import training_transform
from ensembles.judged import RunReport, compare
from ensembles.manifest import Run, read_run
from ensembles.metrics import EnsembleRow, ensemble_rows
from ensembles.soup import uniform_soup
from ensembles.training import predict_probs
from ensembles.uncertainty import Interval, correct, mean_interval, resample_indices, sample_nll
from landscape.assets.checkpoint import Checkpoint
from landscape.assets.datasets import dataset_info, is_dataset_name, load_dataset
from landscape.assets.modules import CheckpointLike, allowing_archs, as_checkpoints, load_checkpoint
from landscape.assets.ood import ood_set
from landscape.assets.resident import ArrayDataset, as_tensors
from landscape.assets.resolve import dataset_name, user_data_identity
from landscape.assets.userdata import Data
from landscape.errors import UserError
from landscape.progress import progress

__all__ = ["RunReport", "compare", "evaluate"]


def evaluate(
    run: str | os.PathLike | Run | Sequence[CheckpointLike],
    *,
    soups: bool = True,
    ood: str | None = None,
    data: str | Data | None = None,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    bn_batch_size: int = 128,
    name: str = "members",
    arch: str | None = None,
    bootstrap_seed: int = 0,
) -> RunReport:
    """Judge an ensemble by size 1..K: ensemble metrics from the test probabilities, plus uniform
    soups (BN recomputed on the train split) and an OOD set when asked.

    Args:
        run: a run directory (its saved test probabilities are used), or the members themselves:
            checkpoint files, ``Checkpoint``s or your own ``nn.Module`` objects of one
            architecture, in ensemble order.
        data: the dataset (a name, ``path/to/file.py:factory`` or ``landscape.Data``); default:
            the one the run (or the members' metadata) records. A run trained on your own data
            needs it again here.
        name: the report's name for members given as objects (a run is named by its folder).
        bootstrap_seed: seeds the test-sample resampling of the intervals (the same seed and
            test set give the same resamples, so that reports compare paired).
        arch: an import-path architecture (``path/to/file.py:factory``) the members' files may
            record and that may be imported to load them (``landscape.trust_arch``).

    Example:
        >>> report = evaluate("runs/starsse", ood="mnist1d-c")
        >>> report.rows[-1].accuracy, report.soup_accuracy[-1]
        >>> evaluate([m1, m2, m3], data=landscape.Data(train=..., test=...), soups=False)
    """
    with allowing_archs(arch):
        members = _members(run, data, name)
        need_models = soups or ood is not None or members.probs is None
        ckpts = members.load(device) if need_models else []
    image = training_transform(ckpts[0], members.data, None) if ckpts else None  # as they were trained
    test = load_dataset(members.data, "test", data_root, image=image)
    labels = as_tensors(test)[1].numpy()
    classes = dataset_info(members.data).num_classes
    models = [c.model.to(device) for c in ckpts]
    probs = members.probs(len(labels), classes) if members.probs is not None else \
        [predict_probs(m, test, device) for m in models]
    report = dict(name=members.name, method=members.method, rows=ensemble_rows(probs, labels), classes=classes)
    sizes = range(1, len(probs) + 1)
    report["correct"] = [correct(np.mean(probs[:k], axis=0), labels) for k in sizes]
    member = np.cumsum([correct(p, labels) for p in probs], axis=0)
    report["member_correct"] = [member[k - 1] / k for k in sizes]
    scores = {"accuracy": report["correct"], "nll": [sample_nll(np.mean(probs[:k], axis=0), labels) for k in sizes]}
    soup_models = []
    if soups:
        bn_inputs = as_tensors(load_dataset(members.data, "train", data_root, image=image))[0]
        soup_models = [uniform_soup(models[:k], bn_inputs, bn_batch_size=bn_batch_size)
                       .to(device) for k in range(1, len(models) + 1)]
        report["soup_correct"] = [correct(predict_probs(s, test, device), labels) for s in soup_models]
        report["soup_accuracy"] = [100.0 * float(c.mean()) for c in report["soup_correct"]]
        scores["soup_accuracy"] = report["soup_correct"]
    report["intervals"] = _intervals(scores, len(labels), bootstrap_seed)
    if ood is not None:
        report.update(_ood(models, soup_models, ood, data_root, device))
    return RunReport(**report)


@dataclass(frozen=True)
class Members:
    """What ``evaluate`` judges: the data's name, the report's name and method, the saved test
    probabilities of a run, read for a test set of (rows, classes) (None: computed from the
    models) and how to load the models."""

    data: str
    name: str
    method: str
    probs: Callable[[int, int], list[np.ndarray]] | None
    load: Callable[[Any], list[Checkpoint]]


def _members(run, data, name: str) -> Members:
    if isinstance(run, (str, os.PathLike, Run)):
        run = run if isinstance(run, Run) else read_run(run)
        if not run.members:
            raise UserError(f"{run.path} has no finished members yet")
        recorded = run.config.data
        data = _same_data(data, recorded, run.path)
        stored = run.dir.read_manifest()["config"].get("data_content")
        if stored is not None and user_data_identity(data) not in (None, stored):
            raise UserError(f"{run.path} was trained on other data named {data!r} (its manifest's data_content "
                            "holds other sizes or hashes); pass the data it was trained on")

        def probs(rows: int, classes: int) -> list[np.ndarray]:
            return run.test_probs(rows=rows, classes=classes)

        def load(device) -> list[Checkpoint]:  # each checked against its record's sha256
            return [load_checkpoint(run.checkpoint_path(m["index"]), device=device) for m in run.members]

        return Members(data, run.path.name, run.config.method, probs, load)
    ckpts = as_checkpoints(list(run))
    if not ckpts:
        raise UserError("evaluate needs a run directory or at least one member")
    recorded = {c.meta.dataset for c in ckpts if c.meta.dataset}
    if data is None and len(recorded) != 1:
        raise UserError("the members do not record one dataset; pass data=")
    data = dataset_name(data if data is not None else recorded.pop())
    return Members(data, name, "members", None, lambda device: ckpts)


def _same_data(data, recorded: str, where) -> str:
    """The run's dataset, or ``data`` registered again (your own data) when it is that one."""
    if data is None:
        if not is_dataset_name(recorded):
            raise UserError(f"{where} was trained on data {recorded!r} that is not a registered dataset (your own?); "
                            "pass it again with --data path/to/file.py:factory (data=...)")
        return recorded
    name = dataset_name(data)
    if name != recorded:
        raise UserError(f"{where} was trained on {recorded!r}, not {name!r}; pass its own data")
    return name


def _intervals(scores: dict[str, list[np.ndarray]], n: int, seed: int) -> list[dict[str, Interval]]:
    """Per size, each score's mean (percent for correctness) with its bootstrap interval."""
    idx = resample_indices(n, seed=seed)
    sizes = len(scores["accuracy"])
    return [{key: mean_interval(values[k], idx, scale=1.0 if key == "nll" else 100.0)
             for key, values in scores.items()} for k in range(sizes)]


def _ood(models, soup_models, spec: str, data_root, device) -> dict:
    """OOD metrics per size (averaged over corruptions and severities) and, where every set is
    of one length (the same base samples corrupted), the per-base-sample correctness averaged
    over the sets."""
    source = ood_set(spec, data_root)
    per_corruption, soup_accs = {}, []
    sums = {"ood_correct": None, "ood_soup_correct": None}
    with progress(total=len(source.corruptions) * 5, desc="ood", unit="set") as bar:
        for corruption in source.corruptions:
            rows_by_severity = []
            for severity in range(1, 6):
                x, y = source.load(corruption, severity)
                ds, labels = ArrayDataset(x, y), y.numpy()
                probs = [predict_probs(m, ds, device) for m in models]
                rows_by_severity.append(ensemble_rows(probs, labels))
                soup_right = [correct(predict_probs(s, ds, device), labels) for s in soup_models]
                soup_accs.append([100.0 * float(c.mean()) for c in soup_right])
                ens_right = [correct(np.mean(probs[:k], axis=0), labels) for k in range(1, len(probs) + 1)]
                for key, right in (("ood_correct", ens_right), ("ood_soup_correct", soup_right)):
                    sums[key] = _add(sums[key], right)
                bar.update(1)
            per_corruption[corruption] = _mean_rows(rows_by_severity)
    sets = len(source.corruptions) * 5
    return {"ood_rows": _mean_rows(list(per_corruption.values())),
            "ood_by_corruption": per_corruption,
            "ood_soup_accuracy": [float(v) for v in np.mean(soup_accs, axis=0)] if soup_models else [],
            **{key: [] if total is False else [t / sets for t in total] for key, total in sums.items()}}


def _add(total, values: list[np.ndarray]):
    """Per-size running sums of per-sample values; False once two sets differ in length."""
    if total is False or (total is not None and total and values and len(total[0]) != len(values[0])):
        return False
    return list(values) if total is None else [t + v for t, v in zip(total, values)]


def _mean_rows(groups: Sequence[list[EnsembleRow]]) -> list[EnsembleRow]:
    """Element-wise mean over groups of per-size rows."""
    out = []
    for rows in zip(*groups):
        fields = {k: float(np.mean([asdict(r)[k] for r in rows])) for k in asdict(rows[0])}
        fields["size"] = rows[0].size
        out.append(EnsembleRow(**fields))
    return out
