"""The tuner: candidate settings timed on a slice of the data, the fastest kept.

It times the strategies (and the loop strategy with several workers), then evaluation batch
sizes, then (on the GPU's BN pass) ghost batches, then (vmap) group sizes. Each candidate is an
``EngineSettings`` run through ``GridEvaluator.attempt`` with a ``Trail`` of its own: the tuner
never changes the evaluator's settings, and the caller applies its ``Tuning``. A candidate that
cannot win is stopped at ``TUNING_LIMIT`` times the fastest's time; one that ran out of memory
with its number of points at once is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from landscape.engine.core import OutOfTime
from landscape.engine.settings import EngineSettings, Tuning
from landscape.engine.trail import Trail, head

if TYPE_CHECKING:
    from landscape.engine.evaluator import GridEvaluator

TUNING_LIMIT = 3.0  # a candidate is stopped once it has taken this many times the fastest's time
Probe = tuple[torch.Tensor, Any]  # (weights, buffers) of the points a candidate is timed on


class Tuner:
    """Times candidate settings for ``evaluator``; ``bar`` (a progress bar) counts the timings."""

    def __init__(self, evaluator: GridEvaluator, bar: Any = None) -> None:
        self.ev, self.bar = evaluator, bar
        self.trail = Trail(evaluator.settings)  # the last timed candidate's
        self.asked = evaluator.settings  # the settings the last candidate ran with
        self.max_group = evaluator.settings.max_group  # learnt from out-of-memory back-offs,
        self.no_ghosts = False  # and from ghost batches that ran out of memory: every later
        self.backoffs: list[str] = []  # candidate starts from them; the lines of those kept

    def tune(self, weights: torch.Tensor, buffers: Any, strategy: str, group_sizes: Sequence[int]) -> Tuning:
        """The strategy (unless given), then the evaluation batch size among a quarter, one and
        four times the current one, then ghost batches and (vmap only) the group size among
        ``group_sizes``, each timed on this group of points."""
        if strategy == "auto":
            choice = self.choose_strategy(weights, buffers)
            settings, timings, note = choice.settings, dict(choice.seconds_per_point), choice.note
            self.ev.loop.keep_replicas(settings.at_once(len(weights)))  # the other candidates' go
        else:
            settings, timings, note = self.ev.settings.but(strategy=strategy), {}, ""
        settings, notes = self._batch_size(weights, buffers, settings, timings)
        settings = settings.but(group_size=self._group_size(weights, buffers, settings, group_sizes, timings))
        loop = settings.strategy == "loop"
        ghosts = self.ev.loop.bn.in_use(self._learnt(settings).bn_ghosts) if loop else 1
        settings = settings.but(workers=settings.workers if loop else 1, bn_ghosts=ghosts, max_group=self.max_group)
        return Tuning(settings, timings, "; ".join(filter(None, [note, *notes])), tuple(self.backoffs))

    def choose_strategy(self, weights: torch.Tensor, buffers: Any) -> Tuning:
        """Time both strategies on a slice of the data for this group of points, and the loop
        strategy with several workers (``worker_candidates``); the fastest wins. Each candidate
        is timed twice, interleaved, and keeps its best time, so that a moment of load on a
        shared machine does not decide."""
        start, timings, notes, skip = self.ev.settings, {}, [], set()
        candidates = {"loop": ("loop", 1 if self.ev.tune_workers else start.workers)}
        if self.ev.tune_workers:
            candidates.update(worker_candidates(self.ev.core.device.type, torch.get_num_threads(), len(weights)))
        candidates["vmap"] = ("vmap", 1)  # last: on large models it can be many times slower
        for _ in range(2):
            for label, (strategy, workers) in candidates.items():
                if label in skip:
                    continue
                try:
                    t, why = self._candidate((weights, buffers), start.but(strategy=strategy, workers=workers),
                                             2 * start.batch_size, time_limit(timings.values(), len(weights)))
                except (RuntimeError, NotImplementedError) as exc:  # e.g. a model vmap cannot batch
                    notes.append(f"{strategy} unavailable: {str(exc).splitlines()[0][:160]}")
                    skip.update(lb for lb, (s, _) in candidates.items() if s == strategy)
                    continue
                if keep_best(timings, label, t, why):
                    notes.append(f"{label} {why}")
                    skip.add(label)
                self._learn(why)
        note = "; ".join(notes)
        if not timings:
            raise RuntimeError(f"no evaluation path works for this model ({note})")
        strategy, workers = candidates[min(timings, key=timings.get)]
        return Tuning(start.but(strategy=strategy, workers=workers, max_group=self.max_group), timings, note,
                      tuple(self.backoffs))

    def time(self, weights: torch.Tensor, buffers: Any, settings: EngineSettings, *, samples: int,
             limit: float | None = None) -> float:
        """Seconds per point of evaluating ``samples`` samples of every split (and of the BN
        inputs) with ``settings``, after a warm-up (which also makes the workers' replicas and
        CUDA graphs). ``limit``: raise ``OutOfTime`` once the timed run has taken that many
        seconds, or the warm-up three times as long: a candidate that cannot win. What its
        out-of-memory back-offs changed is in ``self.trail``."""
        settings = self.asked = self._learnt(settings)
        self.trail = trail = Trail(settings)
        clock = self.ev.core.clock
        n = settings.workers if settings.strategy == "loop" else 1
        try:
            for points, max_samples, allowed in ((n, settings.batch_size, 3), (len(weights), samples, 1)):
                start = time.perf_counter()
                clock.deadline = None if limit is None else start + allowed * limit
                self.ev.attempt(weights[:points], head(buffers, points), trail, max_samples)
            return (time.perf_counter() - start) / len(weights)
        finally:
            clock.stop()
            if self.bar is not None:  # stopped or not (Ctrl-C is raised here too)
                self.bar.update(1)

    # ------------------------------------------------------------------ stages

    def _batch_size(self, weights, buffers, settings: EngineSettings, timings: dict[str, float]):
        """The fastest evaluation batch size (and then ghost batches); the notes of the
        candidates put out."""
        data, batch = self.ev.core.data, settings.batch_size
        longest = max(len(x) for x, _ in data.splits.values())
        sizes = sorted({min(max(1, b), longest) for b in (batch // 4, batch, batch * 4)})
        n = settings.workers if settings.strategy == "loop" else len(weights)  # loop: the points run at once
        probe, samples = (weights[:n], head(buffers, n)), min(longest, max(sizes))
        per_size, notes = race("batch", sizes, n, lambda size, limit: self._kept(
            *self._candidate(probe, settings.but(batch_size=size), samples, limit)))
        timings.update({f"batch={size}": t for size, t in sorted(per_size.items())})
        if per_size:
            settings = settings.but(batch_size=min(per_size, key=per_size.get))
        if settings.strategy == "loop" and self._ghost_candidates(settings):
            settings, more = self._ghosts(probe, settings, samples, timings)
            notes += more
        return settings, notes

    def _ghost_candidates(self, settings: EngineSettings) -> tuple[int, ...]:
        """The ghost-batch counts to time: one fixed BN batch a forward, and as many as make an
        evaluation batch; () where ghost batches cannot run or the user set them."""
        core, bn = self.ev.core, self.ev.loop.bn
        inputs, b = core.data.bn_inputs, core.bn_batch_size
        k = min(max(2, settings.batch_size // b), 0 if inputs is None else len(inputs) // b)
        usable = (self.ev.tune_ghosts and bn.device_sums and core.recompute and core.precision != "bf16"
                  and bn.has_layers and k >= 2)
        return (1, k) if usable else ()

    def _ghosts(self, probe: Probe, settings: EngineSettings, samples: int, timings: dict[str, float]):
        """The fastest of ``_ghost_candidates`` that holds for this model; the notes of the
        candidates that are out (why ghost batches are not used)."""
        bn = self.ev.loop.bn

        def time_count(k: int, limit: float | None) -> tuple[float | None, str | None]:
            t, why = self._candidate(probe, settings.but(bn_ghosts=k), samples, limit)
            ran = self.trail.settings.bn_ghosts
            if k > 1 and bn.in_use(ran) == 1:  # it ran one batch a forward (did not hold, out of memory)
                why = bn.note(ran)
            return self._kept(t, why)

        per_count, notes = race("bn_ghosts", self._ghost_candidates(settings), len(probe[0]), time_count)
        timings.update({f"bn_ghosts={k}": t for k, t in sorted(per_count.items())})
        return settings.but(bn_ghosts=min(per_count, key=per_count.get) if per_count else 1), notes

    def _group_size(self, weights, buffers, settings: EngineSettings, group_sizes: Sequence[int],
                    timings: dict[str, float]) -> int:
        """vmap: the fastest group size among ``group_sizes``; else the group as given."""
        if settings.strategy != "vmap" or not group_sizes:
            return len(weights)
        per_group = {}
        for k in sorted(set(group_sizes)):
            w = weights[:k] if k <= len(weights) else weights[torch.arange(k) % len(weights)]
            b = None if buffers is None else [buffers[i % len(buffers)] for i in range(k)]
            per_group[k] = timings[f"group={k}"] = self.time(w, b, settings, samples=settings.batch_size)
            self._learn(None)
        return min(per_group, key=per_group.get)

    # ------------------------------------------------------------------ candidates

    def _candidate(self, probe: Probe, settings: EngineSettings, samples: int, limit: float | None
                   ) -> tuple[float | None, str | None]:
        """``time`` for a race: (seconds per point, None), or (…, why the candidate is out). A
        candidate that ran out of memory with its number of points at once is out."""
        t, why = None, None
        try:
            t = self.time(*probe, settings, samples=samples, limit=limit)
        except OutOfTime:
            why = f"stopped after {TUNING_LIMIT:g}x the fastest's time"
        if self.trail.settings.workers < self.asked.workers:
            why = "dropped: out of memory"
        return t, why

    def _kept(self, t: float | None, why: str | None) -> tuple[float | None, str | None]:
        self._learn(why)
        return t, why

    def _learn(self, why: str | None) -> None:
        """Keep what the last candidate's back-offs learnt (a smaller group, one fixed BN batch a
        forward), if it is not out."""
        if why is not None:
            return
        learnt = self.trail.settings.max_group
        if learnt is not None:
            self.max_group = min(self.max_group or learnt, learnt)
        if self.asked.bn_ghosts > 1 and self.trail.settings.bn_ghosts == 1:
            self.no_ghosts = True
        self.backoffs += self.trail.backoffs
        self.trail = Trail(self.trail.settings)  # learnt once

    def _learnt(self, settings: EngineSettings) -> EngineSettings:
        """``settings`` with what earlier candidates learnt from running out of memory."""
        group = min(filter(None, (settings.max_group, self.max_group)), default=None)
        return settings.but(max_group=group, bn_ghosts=1 if self.no_ghosts else settings.bn_ghosts)


def race(name: str, candidates: Sequence[int], points: int,
         time_one: Callable[[int, float | None], tuple[float | None, str | None]]
         ) -> tuple[dict[int, float], list[str]]:
    """Time each candidate twice, interleaved, keeping its best time (see ``choose_strategy``),
    each with the time limit that the fastest so far sets for ``points`` points. ``time_one(c,
    limit)`` gives (seconds per point, None) or (…, why it is out): then it is not timed again.
    Returns the times and a note ("name c why") for each candidate out."""
    times: dict[int, float] = {}
    out: set[int] = set()
    notes: list[str] = []
    for _ in range(2):
        for c in [c for c in candidates if c not in out]:
            t, why = time_one(c, time_limit(times.values(), points))
            if keep_best(times, c, t, why):
                out.add(c)
                notes.append(f"{name} {c} {why}")
    return times, notes


def keep_best(times: dict, key, t: float | None, why: str | None) -> bool:
    """Keep a candidate's best time in ``times``; True when ``why`` puts it out of the running
    (its times removed, even from the first round). A second timing stopped by its time limit
    is a moment of load: the first one stands."""
    if why is None:
        times[key] = min(t, times.get(key, float("inf")))
        return False
    if why.startswith("stopped") and key in times:
        return False
    times.pop(key, None)
    return True


def time_limit(seconds_per_point: Iterable[float], points: int) -> float | None:
    """The time limit of the next candidate: ``TUNING_LIMIT`` times the fastest candidate's
    time so far (None before the first), for ``points`` points."""
    best = min(seconds_per_point, default=None)
    return None if best is None else TUNING_LIMIT * best * points


def worker_candidates(device_type: str, threads: int, points: int) -> dict[str, tuple[str, int]]:
    """The loop strategy's worker counts ``--engine auto`` times besides one, as {label: ("loop",
    workers)}: on a CPU one worker per intra-op thread; on a GPU 2, 4 and 8 streams (the
    workers' small kernels run side by side). Never more workers than points."""
    if device_type == "cpu":
        counts = [min(threads, points)]
    else:
        counts = [n for n in (2, 4, 8) if n <= points]
    unit = "workers" if device_type == "cpu" else "streams"
    return {f"loop, {n} {unit}": ("loop", n) for n in counts if n > 1}
