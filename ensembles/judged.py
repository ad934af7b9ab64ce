"""A judged ensemble run (``RunReport``, what ``ensembles.evaluate`` returns), its paired
comparisons (``compare``) and its per-sample arrays on disk (``save_samples``/``read_samples``),
from which intervals and claims are computed again without judging the run again."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.metrics import EnsembleRow
from ensembles.uncertainty import Interval, paired_difference, resample_indices
from landscape.atomic import write_bytes
from landscape.errors import UserError

# the per-sample arrays of a report: per ensemble size, one value per test sample
SAMPLE_FIELDS = ("correct", "soup_correct", "member_correct", "ood_correct", "ood_soup_correct")


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
        classes: the number of classes of the data.
        intervals: per size, the 95% bootstrap intervals over test samples of ``accuracy``,
            ``nll`` and ``soup_accuracy`` (``ensembles.uncertainty``).
        correct: per size, the ensemble's (N,) per-sample correctness on the test set;
            ``soup_correct`` the soups'; ``member_correct`` the mean correctness of the first k
            members; ``ood_correct`` and ``ood_soup_correct`` per base test sample of the OOD
            set, the correctness averaged over its corruptions and severities (empty when its
            sets differ in size). What paired comparisons resample (``compare``,
            ``ensembles.claims``); left out of ``to_dict``, kept by ``save_samples``.
    """

    name: str
    method: str
    rows: list[EnsembleRow]
    soup_accuracy: list[float] = field(default_factory=list)
    ood_rows: list[EnsembleRow] = field(default_factory=list)
    ood_by_corruption: dict[str, list[EnsembleRow]] = field(default_factory=dict)
    ood_soup_accuracy: list[float] = field(default_factory=list)
    intervals: list[dict[str, Interval]] = field(default_factory=list)
    classes: int | None = None
    correct: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)
    soup_correct: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)
    member_correct: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)
    ood_correct: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)
    ood_soup_correct: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, with its ``table``, without the per-sample arrays."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SAMPLE_FIELDS}
        doc = asdict(RunReport(**doc))
        for key in SAMPLE_FIELDS:
            del doc[key]
        doc["table"] = self.table()
        return doc

    def samples(self) -> dict[str, list[np.ndarray]]:
        """The per-sample arrays by field name (``SAMPLE_FIELDS``)."""
        return {key: getattr(self, key) for key in SAMPLE_FIELDS}

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
            for key, iv in (self.intervals[i] if self.intervals else {}).items():
                rec[f"{key}_low"], rec[f"{key}_high"] = iv.low, iv.high
            out.append(rec)
        return out


def compare(reports: Sequence[RunReport], size: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Paired differences of test accuracy between runs judged on one test set: for every pair
    (a, b) at ensemble ``size`` (default: the largest both have), ``a - b`` in percent points with
    its bootstrap interval over the same resampled test samples, and whether it says a is better
    (``verdict`` of "a beats b": supported, contradicted or inconclusive); the same for soups.

    Raises:
        UserError: reports of different test sets.
    """
    if size is not None and not (isinstance(size, int) and size >= 1):
        raise UserError(f"size must be a positive ensemble size, got {size!r}")
    out = []
    for i, a in enumerate(reports):
        for b in reports[i + 1:]:
            if len(a.correct[0]) != len(b.correct[0]):
                raise UserError(f"{a.name} and {b.name} were judged on different test sets; compare runs of one dataset")
            k = min(size or len(a.correct), len(a.correct), len(b.correct))
            idx = resample_indices(len(a.correct[0]), seed=seed)
            rec: dict[str, Any] = {"a": a.name, "b": b.name, "size": k}
            pairs = [("accuracy", a.correct, b.correct), ("soup_accuracy", a.soup_correct, b.soup_correct)]
            for key, ca, cb in pairs:
                if len(ca) >= k and len(cb) >= k:
                    diff = paired_difference(ca[k - 1], cb[k - 1], idx)
                    rec[key] = {**diff.to_dict(), "verdict": diff.verdict("greater"), "text": diff.format()}
            out.append(rec)
    return out


def save_samples(report: RunReport, path: str | os.PathLike) -> Path:
    """Write the report's per-sample arrays to ``path`` (.npz, atomically): one (sizes, N)
    float32 array per non-empty field."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.stack(v).astype(np.float32) for k, v in report.samples().items() if v})
    return write_bytes(Path(path), buf.getvalue())


def read_samples(path: str | os.PathLike, sizes: int, fix: str) -> dict[str, list[np.ndarray]]:
    """The per-sample arrays ``save_samples`` wrote, checked: known fields, ``sizes`` rows of
    values in [0, 1], one length per family (test set, OOD set).

    Raises:
        UserError: a missing or damaged file (named, with the field and ``fix``).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable per-sample file ({type(exc).__name__}); {fix}") from None
    for key, a in arrays.items():
        problem = None
        if key not in SAMPLE_FIELDS:
            problem = f"is not one of {', '.join(SAMPLE_FIELDS)}"
        elif a.ndim != 2 or a.shape[0] != sizes or a.dtype != np.float32:
            problem = f"must be float32 of shape ({sizes}, N), got {a.dtype} {a.shape}"
        elif not (np.isfinite(a).all() and a.min(initial=0) >= 0 and a.max(initial=0) <= 1):
            problem = "must hold values in [0, 1]"
        if problem:
            raise UserError(f"{path}: array {key!r} {problem}; {fix}")
    for family in (("correct", "soup_correct", "member_correct"), ("ood_correct", "ood_soup_correct")):
        lengths = {arrays[k].shape[1] for k in family if k in arrays}
        if len(lengths) > 1:
            raise UserError(f"{path}: arrays {', '.join(family)} hold different sample counts {sorted(lengths)}; {fix}")
    if "correct" not in arrays:
        raise UserError(f"{path}: array 'correct' is missing; {fix}")
    return {k: list(arrays[k]) if k in arrays else [] for k in SAMPLE_FIELDS}
