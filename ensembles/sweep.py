"""The paper's grid of cycle settings for SSE and StarSSE (docs/architecture.md).

Each cell trains a run with ``cycle_lr = r_lr * lr`` and ``cycle_epochs = r_ep * epochs``
(rounded, at least 1) into ``<out>/<method>-lr<r_lr>-ep<r_ep>``; finished cells are skipped,
and member 1 (identical in every cell: it does not depend on the cycle settings) is trained once
and copied into the other cells.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ensembles.evaluate import evaluate
from ensembles.config import RunConfig
from ensembles.run import train
from ensembles.rundir import RunDir
from landscape.errors import UserError
from landscape.progress import progress


@dataclass(frozen=True)
class SweepResult:
    """Ensemble accuracy (%) of the full ensemble per cell, ``accuracy[i, j]`` for
    ``lr_ratios[i]`` and ``epoch_ratios[j]``; also the soup's accuracy when computed."""

    method: str
    lr_ratios: tuple[float, ...]
    epoch_ratios: tuple[float, ...]
    accuracy: np.ndarray
    soup_accuracy: np.ndarray | None
    runs: dict[tuple[float, float], Path]


def cell_name(method: str, lr_ratio: float, epoch_ratio: float) -> str:
    return f"{method}-lr{lr_ratio:g}-ep{epoch_ratio:g}"


def sweep(
    base: RunConfig,
    lr_ratios: Sequence[float],
    epoch_ratios: Sequence[float],
    out: str | os.PathLike,
    *,
    soups: bool = False,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
) -> SweepResult:
    """Train and judge every cell of the grid (``base.cycle_*`` are ignored).

    Example:
        >>> base = RunConfig("starsse", ("pre.safetensors",), "mnist1d", members=5, epochs=10,
        ...                  lr=0.02, cycle_epochs=1, cycle_lr=0.02)
        >>> res = sweep(base, [0.25, 0.5, 1, 2, 4], [0.5, 1, 2, 4], "runs/sweep")
    """
    if base.method not in ("sse", "starsse"):
        raise UserError(f"a sweep of cycle settings is for sse or starsse, not {base.method}")
    if not lr_ratios or not epoch_ratios or min(*lr_ratios, *epoch_ratios) <= 0:
        raise UserError("cycle ratios must be positive numbers, e.g. 0.25,0.5,1,2,4")
    out = Path(out)
    acc = np.full((len(lr_ratios), len(epoch_ratios)), np.nan)
    soup = acc.copy() if soups else None
    runs, first = {}, None
    with progress(total=acc.size, desc=f"sweep {base.method}", unit="cell") as bar:
        for i, r_lr in enumerate(lr_ratios):
            for j, r_ep in enumerate(epoch_ratios):
                cfg = replace(base, cycle_lr=r_lr * base.lr,
                              cycle_epochs=max(1, round(r_ep * base.epochs)))
                path = out / cell_name(base.method, r_lr, r_ep)
                if first is not None and not RunDir(path).finished(1):
                    RunDir(first).copy_member(1, RunDir(path))
                run = train(cfg, path, data_root=data_root, device=device)
                first = first or path
                report = evaluate(run, soups=soups, data_root=data_root, device=device)
                acc[i, j] = report.rows[-1].accuracy
                if soup is not None:
                    soup[i, j] = report.soup_accuracy[-1]
                runs[(r_lr, r_ep)] = path
                bar.update(1)
    return SweepResult(base.method, tuple(lr_ratios), tuple(epoch_ratios), acc, soup, runs)

