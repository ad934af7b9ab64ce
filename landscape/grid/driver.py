"""The shared driver of grid evaluations (planes and paths).

It chooses the engine settings, evaluates the missing points in groups, writes each group as
it finishes and shows progress. Under ``torchrun`` the groups are shared dynamically through
part files (``landscape.grid.parts``): every process claims the next unclaimed group, so faster
processes take more, and the main process, the only one that writes HDF5, merges them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from landscape.engine.evaluator import GridEvaluator
from landscape.engine.settings import EngineSettings
from landscape.errors import UserError
from landscape.grid.distributed import Group
from landscape.grid.parts import claim, merge_parts, write_part
from landscape.grid.record import EngineRecord, Measured
from landscape.grid.settings import GridSettings
from landscape.grid.store import GridStore, parts_dir
from landscape.progress import progress

Index = tuple[int, ...]


@dataclass(frozen=True)
class GridJob:
    """What a grid evaluation computes, as planes and paths describe it.

    Attributes:
        open_store: creates or resumes the results file (called on the main process only).
        make_evaluator: builds the evaluator (evaluation data and model), called only when
            there is work; a new file (``--overwrite`` too) is written only once it succeeded,
            so an error from it leaves the old results, or no file, as they were.
        weights: the (P,) float64 weight vector of a point, from the base checkpoints directly.
        buffers: a point's BN buffers (None under BN recompute).
        total: the number of points.
        desc: the progress bar's label.
    """

    open_store: Callable[[], GridStore]
    make_evaluator: Callable[[], GridEvaluator]
    weights: Callable[[Index], torch.Tensor]
    buffers: Callable[[Index], dict[str, torch.Tensor]] | None
    total: int
    desc: str


def evaluate_grid(out: str | os.PathLike, job: GridJob, settings: GridSettings, *, overwrite: bool = False,
                  group: Group = Group()) -> None:
    """Compute every missing point of the results file ``out``, on every process of ``group``.

    ``settings.engine``: ``auto`` tunes the strategy, batch size and (without a
    ``group_size``) group size on the first group and records the choice; ``loop``/``vmap``
    use the settings as given. ``overwrite`` is ``job.open_store``'s (``GridStore.open``).
    """
    store, todo = _prepare(job.open_store, parts_dir(out), group)
    try:
        if todo:
            _evaluate(out, job, settings, store, todo, group)
    finally:
        if store is not None:
            store.close()
    group.barrier()


def _evaluate(out, job: GridJob, settings: GridSettings, store, todo, group: Group) -> None:
    evaluator = job.make_evaluator()
    if store is not None:
        store.start()  # the inputs are checked: only now does a new file replace the old results

    def inputs(g):
        w = torch.stack([job.weights(ix) for ix in g])
        return w, (None if job.buffers is None else [job.buffers(ix) for ix in g])

    first = list(todo[: settings.group])
    chosen = _shared(group, lambda: choose_settings(store, evaluator, settings.engine, settings.group,
                                                    settings.group_size is None, *inputs(first)))
    evaluator.apply(chosen)
    size = chosen.group_size
    groups = [list(todo[i : i + size]) for i in range(0, len(todo), size)]
    if group.world_size == 1:
        _run_alone(store, evaluator, groups, inputs, job, len(todo))
    else:
        _run_shared(store, evaluator, groups, inputs, job, len(todo), parts_dir(out), group)


def _prepare(open_store, parts: Path, group: Group):
    """On the main process: open the file, merge leftover parts, list the missing points and
    clear old claims; then tell every process the list (or the error)."""
    store, todo, error = None, None, None
    if group.is_main:
        try:
            store = open_store()
            if not store.new:  # parts of an earlier, different run are never merged
                merge_parts(store, parts)
            todo = store.missing()
            shutil.rmtree(parts / "claims", ignore_errors=True)
        except UserError as exc:
            error = exc
    if group.world_size > 1:
        todo, message = _broadcast(group, (todo, str(error) if error else None))
        if message and not group.is_main:
            raise UserError(message)
    if error:
        raise error
    return store, todo


def _run_alone(store, evaluator, groups, inputs, job: GridJob, n_todo: int) -> None:
    seen = 0
    with progress(total=job.total, initial=job.total - n_todo, desc=job.desc, unit="pt") as bar:
        for g in groups:
            store.write(g, evaluator.evaluate(*inputs(g)).metrics)
            seen = record_backoffs(store, evaluator, seen)
            bar.update(len(g))


def _run_shared(store, evaluator, groups, inputs, job: GridJob, n_todo: int, parts: Path, group: Group) -> None:
    (parts / "claims").mkdir(parents=True, exist_ok=True)
    group.barrier()  # claims are cleared before anyone claims
    bar = progress(total=job.total, initial=job.total - n_todo, desc=job.desc, unit="pt") if group.is_main else None
    seen = 0  # back-offs of the main process only: each process has its own evaluator
    for k, g in enumerate(groups):
        if not claim(parts / "claims" / str(k)):
            continue
        write_part(parts / f"part-{k}.npz", g, evaluator.evaluate(*inputs(g)).metrics)
        if store is not None:
            bar.update(merge_parts(store, parts))
            seen = record_backoffs(store, evaluator, seen)
    group.barrier()
    if store is not None:
        bar.update(merge_parts(store, parts))
        bar.close()
        shutil.rmtree(parts, ignore_errors=True)


def _shared(group: Group, decide: Callable[[], Any]) -> Any:
    """The main process decides (e.g. measures the engine settings); everyone uses its answer,
    or raises its error (so no process waits for an answer that never comes)."""
    if group.world_size == 1:
        return decide()
    value, error = None, None
    if group.is_main:
        try:
            value = decide()
        except Exception as exc:  # noqa: BLE001 - re-raised on every process below
            error = exc
    value, message = _broadcast(group, (value, None if error is None else str(error)))
    if error is not None:
        raise error
    if message is not None:
        raise RuntimeError(f"the main process failed: {message}")
    return value


def _broadcast(group: Group, value):
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def choose_settings(store: GridStore, evaluator: GridEvaluator, engine: str, group_size: int, tune_group: bool,
                    w: torch.Tensor, bufs) -> EngineSettings:
    """The engine settings: the user's, a resumed run's (with what its out-of-memory back-offs
    learnt), or measured now on the first group of points ``w``; recorded in the file."""
    previous = EngineRecord.from_dict(store.config["runtime"].get("engine"))
    key = evaluator.tuning_key()
    if engine != "auto":
        mine = EngineRecord(engine, evaluator.batch_size, group_size, evaluator.workers, "user", key,
                            evaluator.data_placement)
        same = previous is not None and previous.chosen_by == "user" and previous.tuned_for == key and \
            (previous.path, previous.batch_size, previous.workers) == (mine.path, mine.batch_size, mine.workers)
        if not same:
            store.set_runtime("engine", mine.to_dict())
            previous = mine
        return previous.settings(bn_ghosts=evaluator.ghosts_in_use).but(group_size=group_size)
    if previous is not None and previous.chosen_by == "measured" and previous.tuned_for == key:  # resumed run
        return previous.settings()
    groups = (max(1, group_size // 2), group_size, 2 * group_size) if tune_group else ()
    tuning = evaluator.tune(w, bufs, group_sizes=groups)
    note = tuning.note
    if previous is not None and previous.chosen_by == "measured":
        before = previous.tuned_for or "what an earlier version did not record"
        note = f"measured again: the earlier run was tuned for {before}. {note}".strip()
    s = tuning.settings
    measured = Measured(s.bn_ghosts, evaluator.folded_layers, evaluator.matmul_convs, tuning.seconds_per_point,
                        note, evaluator.graph_note or None, evaluator.ghost_note or None)
    record = EngineRecord(s.strategy, s.batch_size, s.group_size, s.workers, "measured", key,
                          evaluator.data_placement, measured)
    store.set_runtime("engine", record.to_dict())
    return s  # with the largest group that the back-offs while tuning left


def record_backoffs(store: GridStore | None, evaluator: GridEvaluator, seen: int) -> int:
    """Write the evaluator's out-of-memory back-offs into the file's engine record as they
    happen, with the settings they led to (a resumed run starts from those)."""
    if store is None or len(evaluator.backoffs) == seen:
        return seen
    record = EngineRecord.from_dict(store.config["runtime"].get("engine"))
    if record is None:  # written by choose_settings before the first group: never absent
        return seen
    record = record.after(evaluator.backoffs[seen:], evaluator.settings, evaluator.ghosts_in_use)
    store.set_runtime("engine", record.to_dict())
    return len(evaluator.backoffs)
