"""Judging ensemble runs: quality by ensemble size, diversity, soups, out of distribution."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ensembles.metrics import EnsembleRow, accuracy, ensemble_rows
from ensembles.manifest import Run, read_run
from ensembles.soup import uniform_soup
from ensembles.training import predict_probs
from landscape.assets.modules import load_checkpoint
from landscape.assets.datasets import load_dataset
from landscape.assets.ood import ood_set
from landscape.assets.resident import ArrayDataset, as_tensors
from landscape.progress import progress


@dataclass(frozen=True)
class RunReport:
    """An ensemble run judged by ensemble size 1..K.

    Attributes:
        name, method: the run directory's name and its method.
        rows: in-distribution test metrics per size (see ``EnsembleRow``).
        soup_accuracy: test accuracy (%) of the uniform soup of the first k members, per size
            (empty when soups were not computed).
        ood_rows: metrics averaged over every corruption and severity, per size.
        ood_by_corruption: per corruption (averaged over severities), per size.
        ood_soup_accuracy: the soups' accuracy averaged over corruptions and severities.
    """

    name: str
    method: str
    rows: list[EnsembleRow]
    soup_accuracy: list[float] = field(default_factory=list)
    ood_rows: list[EnsembleRow] = field(default_factory=list)
    ood_by_corruption: dict[str, list[EnsembleRow]] = field(default_factory=dict)
    ood_soup_accuracy: list[float] = field(default_factory=list)

    def table(self) -> list[dict]:
        """One flat record per ensemble size (for CSV/JSON)."""
        out = []
        for i, row in enumerate(self.rows):
            rec = {"run": self.name, "method": self.method, **asdict(row)}
            if self.soup_accuracy:
                rec["soup_accuracy"] = self.soup_accuracy[i]
            if self.ood_rows:
                rec.update({f"ood_{k}": v for k, v in asdict(self.ood_rows[i]).items()
                            if k != "size"})
            if self.ood_soup_accuracy:
                rec["ood_soup_accuracy"] = self.ood_soup_accuracy[i]
            out.append(rec)
        return out


def evaluate(
    run: str | os.PathLike | Run,
    *,
    soups: bool = True,
    ood: str | None = None,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
    bn_batch_size: int = 128,
) -> RunReport:
    """Judge a run directory: ensemble metrics by size from the saved test probabilities, plus
    uniform soups (BN recomputed on the train split) and an OOD set when asked.

    Example:
        >>> report = evaluate("runs/starsse", ood="mnist1d-c")
        >>> report.rows[-1].accuracy, report.soup_accuracy[-1]
    """
    run = run if isinstance(run, Run) else read_run(run)
    if not run.members:
        from landscape.errors import UserError

        raise UserError(f"{run.path} has no finished members yet")
    data = run.config.data
    _, labels = as_tensors(load_dataset(data, "test", data_root))
    labels = labels.numpy()
    rows = ensemble_rows(run.test_probs(), labels)
    report = dict(name=run.path.name, method=run.config.method, rows=rows)
    need_models = soups or ood is not None
    models = [load_checkpoint(run.checkpoint_path(m["index"]), device=device).model
              for m in run.members] if need_models else []
    soup_models = []
    if soups:
        bn_inputs = as_tensors(load_dataset(data, "train", data_root))[0]
        soup_models = [uniform_soup(models[:k], bn_inputs, bn_batch_size=bn_batch_size)
                       .to(device) for k in range(1, len(models) + 1)]
        test = load_dataset(data, "test", data_root)
        report["soup_accuracy"] = [accuracy(predict_probs(s, test, device), labels)
                                   for s in soup_models]
    if ood is not None:
        report.update(_ood(models, soup_models, ood, data_root, device))
    return RunReport(**report)


def _ood(models, soup_models, spec: str, data_root, device) -> dict:
    source = ood_set(spec, data_root)
    per_corruption, soup_accs = {}, []
    with progress(total=len(source.corruptions) * 5, desc="ood", unit="set") as bar:
        for corruption in source.corruptions:
            rows_by_severity = []
            for severity in range(1, 6):
                x, y = source.load(corruption, severity)
                ds = ArrayDataset(x, y)
                probs = [predict_probs(m, ds, device) for m in models]
                rows_by_severity.append(ensemble_rows(probs, y.numpy()))
                soup_accs.append([accuracy(predict_probs(s, ds, device), y.numpy())
                                  for s in soup_models])
                bar.update(1)
            per_corruption[corruption] = _mean_rows(rows_by_severity)
    return {"ood_rows": _mean_rows(list(per_corruption.values())),
            "ood_by_corruption": per_corruption,
            "ood_soup_accuracy": [float(v) for v in np.mean(soup_accs, axis=0)] if soup_models else []}


def _mean_rows(groups: Sequence[list[EnsembleRow]]) -> list[EnsembleRow]:
    """Element-wise mean over groups of per-size rows."""
    out = []
    for rows in zip(*groups):
        fields = {k: float(np.mean([asdict(r)[k] for r in rows])) for k in asdict(rows[0])}
        fields["size"] = rows[0].size
        out.append(EnsembleRow(**fields))
    return out
