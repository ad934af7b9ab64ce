"""The shared driver of grid evaluations (planes and paths).

It picks the engine path, evaluates the missing points in groups, writes each group as it
finishes and shows progress. Under ``torchrun`` the groups are shared dynamically: every process
claims the next unclaimed group (an atomically created claim file), so faster processes take
more; each finished group goes to a part file beside the results file, and the main process
merges parts into the HDF5 file as they arrive (it is the only one that writes HDF5). Part files
left by an interrupted run are merged when it is rerun, so nothing finished is computed twice.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from landscape.grid.distributed import Group
from landscape.engine.evaluator import GridEvaluator
from landscape.errors import UserError
from landscape.progress import progress
from landscape.grid.store import GridStore, parts_dir

Index = tuple[int, ...]


class EngineChoice(NamedTuple):
    """The engine settings a grid runs with: the user's, a resumed run's, or measured now."""

    path: str
    batch_size: int
    group_size: int
    max_group: int | None  # the largest group after out-of-memory back-offs
    workers: int  # points at once on the loop path
    bn_ghosts: int = 1  # fixed BN batches a forward in the GPU's BN pass


def evaluate_grid(
    out: str | os.PathLike,
    open_store: Callable[[], GridStore],
    make_evaluator: Callable[[], GridEvaluator],
    weights: Callable[[Index], torch.Tensor],
    buffers: Callable[[Index], dict[str, torch.Tensor]] | None,
    *,
    engine: str,
    group_size: int,
    tune_group: bool = False,
    total: int,
    desc: str,
    fresh: bool,
    group: Group = Group(),
) -> None:
    """Compute every missing point of the results file ``out``.

    Args:
        open_store: creates or resumes the file (called on the main process only).
        make_evaluator: builds the evaluator (resident data and model), called only when there
            is work; a ``UserError`` from it removes a file this call created.
        weights: the (P,) float64 weight vector of a point, from the base checkpoints directly.
        buffers: a point's BN buffers (None under BN recompute).
        engine: ``auto`` tunes path, batch size and (with ``tune_group``) group size on the
            first group and records the choice; ``loop``/``vmap`` use the settings as given.
        fresh: the file did not exist before (or is being overwritten).
        group: this process's place under torchrun.
    """
    parts = parts_dir(out)
    if fresh and group.is_main:  # parts of an earlier, different run must never be merged
        shutil.rmtree(parts, ignore_errors=True)
    store, todo = _prepare(open_store, parts, group)
    try:
        if not todo:
            return
        try:
            evaluator = make_evaluator()
        except UserError:
            if fresh and store is not None:
                store.close()
                Path(out).unlink(missing_ok=True)
            raise

        def inputs(g):
            w = torch.stack([weights(ix) for ix in g])
            return w, (None if buffers is None else [buffers(ix) for ix in g])

        first = list(todo[:group_size])
        choice = _shared(group, lambda: _tune(store, evaluator, engine, group_size, tune_group, *inputs(first)))
        path, group_size = choice.path, choice.group_size
        evaluator.batch_size, evaluator.max_group = choice.batch_size, choice.max_group
        evaluator.workers = choice.workers
        evaluator.use_ghosts(choice.bn_ghosts)
        groups = [list(todo[i : i + group_size]) for i in range(0, len(todo), group_size)]
        if group.world_size == 1:
            _run_alone(store, evaluator, groups, inputs, path, total, len(todo), desc)
        else:
            _run_shared(store, evaluator, groups, inputs, path, total, len(todo), desc, parts,
                        group)
    finally:
        if store is not None:
            store.close()


def _prepare(open_store, parts: Path, group: Group):
    """On the main process: open the file, merge leftover parts, list the missing points and
    clear old claims; then tell every process the list (or the error)."""
    store, todo, error = None, None, None
    if group.is_main:
        try:
            store = open_store()
            _merge_parts(store, parts)
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


def _run_alone(store, evaluator, groups, inputs, path, total, n_todo, desc) -> None:
    seen = 0
    with progress(total=total, initial=total - n_todo, desc=desc, unit="pt") as bar:
        for g in groups:
            store.write(g, evaluator.evaluate(*inputs(g), path=path).metrics)
            seen = _record_backoffs(store, evaluator, seen)
            bar.update(len(g))


def _run_shared(store, evaluator, groups, inputs, path, total, n_todo, desc, parts, group):
    (parts / "claims").mkdir(parents=True, exist_ok=True)
    group.barrier()  # claims are cleared before anyone claims
    bar = progress(total=total, initial=total - n_todo, desc=desc, unit="pt") \
        if group.is_main else None
    seen = 0  # back-offs of the main process only: each process has its own evaluator
    for k, g in enumerate(groups):
        if not _claim(parts / "claims" / str(k)):
            continue
        metrics = evaluator.evaluate(*inputs(g), path=path).metrics
        _write_part(parts / f"part-{k}.npz", g, metrics)
        if store is not None:
            bar.update(_merge_parts(store, parts))
            seen = _record_backoffs(store, evaluator, seen)
    group.barrier()
    if store is not None:
        bar.update(_merge_parts(store, parts))
        bar.close()
        shutil.rmtree(parts, ignore_errors=True)


def _claim(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _write_part(path: Path, index: list[Index], metrics: dict) -> None:
    arrays = {f"{split}/{name}": np.asarray(v) for split, m in metrics.items()
              for name, v in m.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, index=np.asarray(index, dtype=np.int64), **arrays)
    os.replace(tmp, path)


def _merge_parts(store: GridStore, parts: Path) -> int:
    """Write every finished part into the store, then delete it; returns the points merged."""
    merged = 0
    for part in sorted(parts.glob("part-*.npz")) if parts.is_dir() else []:
        with np.load(part) as f:
            index = [tuple(int(v) for v in row) for row in f["index"]]
            metrics: dict[str, dict[str, np.ndarray]] = {}
            for key in f.files:
                if key != "index":
                    split, name = key.split("/")
                    metrics.setdefault(split, {})[name] = f[key]
        store.write(index, metrics)
        part.unlink()
        merged += len(index)
    return merged


def _shared(group: Group, decide: Callable[[], Any]) -> Any:
    """The main process decides (e.g. measures the engine paths); everyone uses its answer, or
    raises its error (so no process waits for an answer that never comes)."""
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


def _tune(store: GridStore, evaluator: GridEvaluator, engine: str, group_size: int,
          tune_group: bool, w, bufs) -> EngineChoice:
    """The engine settings: the user's, a resumed run's (with what its out-of-memory back-offs
    learnt), or measured now on the first group of points ``w``."""
    previous = store.config["runtime"].get("engine") or {}
    if engine != "auto":
        mine = {"path": engine, "batch_size": evaluator.batch_size, "workers": evaluator.workers}
        same = previous.get("chosen_by") == "user" and previous.get("tuned_for") == evaluator.tuning_key() \
            and all(previous.get(k, 1 if k == "workers" else None) == v for k, v in mine.items())
        if not same:
            store.set_runtime("engine", {**mine, "group_size": group_size, "chosen_by": "user",
                                         "tuned_for": evaluator.tuning_key(), "data": evaluator.data_placement})
            previous = {}
        return EngineChoice(engine, previous.get("batch_size_after_backoff", evaluator.batch_size), group_size,
                            previous.get("max_group"), previous.get("workers_after_backoff", evaluator.workers),
                            previous.get("bn_ghosts_after_backoff", evaluator.ghosts_in_use))
    key = evaluator.tuning_key()
    if previous.get("chosen_by") == "measured" and previous.get("tuned_for") == key:  # resumed run
        return EngineChoice(previous["path"], previous.get("batch_size_after_backoff", previous["batch_size"]),
                            previous["group_size"], previous.get("max_group"),
                            previous.get("workers_after_backoff", previous.get("workers", 1)),
                            previous.get("bn_ghosts_after_backoff", previous.get("bn_ghosts", 1)))
    groups = (max(1, group_size // 2), group_size, 2 * group_size) if tune_group else ()
    tuning = evaluator.tune(w, bufs, group_sizes=groups)
    note = tuning.note
    if previous.get("chosen_by") == "measured":
        before = previous.get("tuned_for") or "what an earlier version did not record"
        note = f"measured again: the earlier run was tuned for {before}. {note}".strip()
    store.set_runtime("engine", {"path": tuning.path, "batch_size": tuning.batch_size,
                                 "group_size": tuning.group_size, "workers": tuning.workers,
                                 "bn_ghosts": tuning.bn_ghosts, "chosen_by": "measured",
                                 "tuned_for": key, "bn_folded_layers": evaluator.folded_layers,
                                 "matmul_convs": evaluator.matmul_convs,
                                 "seconds_per_point": tuning.seconds_per_point, "note": note,
                                 "cuda_graph": evaluator.graph_note or None,
                                 "bn_ghosts_note": evaluator.ghost_note or None, "data": evaluator.data_placement})
    return EngineChoice(tuning.path, tuning.batch_size, tuning.group_size,
                        evaluator.max_group, tuning.workers, tuning.bn_ghosts)  # max_group: back-offs while tuning


def _record_backoffs(store: GridStore | None, evaluator: GridEvaluator, seen: int) -> int:
    """Write the evaluator's out-of-memory back-offs into the file's engine record as they
    happen, with the batch and group sizes they led to (a resumed run starts from those)."""
    if store is None or len(evaluator.backoffs) == seen:
        return seen
    engine = dict(store.config["runtime"].get("engine") or {})
    engine.update(backoffs=engine.get("backoffs", []) + evaluator.backoffs[seen:],  # an earlier run's too
                  batch_size_after_backoff=evaluator.batch_size, max_group=evaluator.max_group,
                  workers_after_backoff=evaluator.workers, bn_ghosts_after_backoff=evaluator.ghosts_in_use)
    store.set_runtime("engine", engine)
    return len(evaluator.backoffs)
