"""The shared driver of grid evaluations: pick the engine path, evaluate the missing points in
groups, write each group as it finishes, show progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from landscape.engine import GridEvaluator
from landscape.progress import progress
from landscape.store import GridStore

Index = tuple[int, ...]


def run_points(
    store: GridStore,
    evaluator: GridEvaluator,
    todo: Sequence[Index],
    weights: Callable[[Index], torch.Tensor],
    buffers: Callable[[Index], dict[str, torch.Tensor]] | None,
    *,
    engine: str,
    group_size: int,
    total: int,
    desc: str,
) -> None:
    """Evaluate the points ``todo`` (indices into the store's grid) in groups.

    ``weights(index)`` is the (P,) float64 weight vector of a point, computed from the base
    checkpoints directly; ``buffers(index)`` its BN buffers (None under BN recompute).
    """
    groups = [list(todo[i : i + group_size]) for i in range(0, len(todo), group_size)]
    if not groups:
        return

    def inputs(group):
        w = torch.stack([weights(ix) for ix in group])
        return w, (None if buffers is None else [buffers(ix) for ix in group])

    path = _choose_path(store, evaluator, engine, *inputs(groups[0]))
    with progress(total=total, initial=total - len(todo), desc=desc, unit="pt") as bar:
        for group in groups:
            result = evaluator.evaluate(*inputs(group), path=path)
            store.write(group, result.metrics)
            bar.update(len(group))


def _choose_path(store: GridStore, evaluator: GridEvaluator, engine: str, w, bufs) -> str:
    if engine != "auto":
        store.set_runtime("engine", {"path": engine, "chosen_by": "user"})
        return engine
    previous = store.config["runtime"].get("engine")
    if previous and previous.get("chosen_by") == "measured":  # a resumed run keeps its choice
        return previous["path"]
    choice = evaluator.choose_path(w, bufs)
    store.set_runtime("engine", {"path": choice.path, "chosen_by": "measured",
                                 "seconds_per_point": choice.seconds_per_point,
                                 "note": choice.note})
    return choice.path
