"""The batched grid evaluator (design.md, "Evaluation engine").

Evaluation data is resident on the device. A group of K weight vectors is evaluated either by a
tight loop that loads each weight set into a private copy of the model (``loop``), or by stacking
the K weight sets and mapping the model over them with ``torch.func.vmap`` (``vmap``). Which is
faster depends on model and device, so ``path="auto"`` measures both on a slice of the data and
records the choice. Both give the numbers of the naive per-point loop to float tolerance.

``tune`` goes further: after the path it times a few evaluation batch sizes and, on the vmap path,
group sizes. None of these choices changes the numbers beyond float rounding: BN statistics are
always gathered over batches of the fixed ``bn_batch_size``. Running out of memory halves the
evaluation batch, then splits the group, instead of failing (``backoffs`` records each step).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from landscape.engine.bn import bn_modules, fixed_batches, recompute_bn_
from landscape.engine.cuda_graph import GraphedStep
from landscape.errors import UserError
from landscape.engine.fold import Folded, try_fold
from landscape.engine.layout import ParamLayout
from landscape.engine.numerics import PRECISIONS, numerics
from landscape.progress import progress
from landscape.engine.thin_conv import use_matmul_convs

PATHS = ("auto", "loop", "vmap")
TUNING_LIMIT = 3.0  # the tuner stops timing a candidate once it has taken this many times the fastest's time
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class EvalData:
    """Evaluation data: ``splits`` maps a split name to (inputs, labels); ``bn_inputs`` are the
    train inputs used for BN recompute (None when not recomputing); ``decode``, when given, turns
    a batch of stored inputs (e.g. uint8 images) into model inputs.

    The tensors are resident on the device the model runs on, unless ``device`` names another
    one: then they stay where they are (host memory, for data that does not fit on the GPU;
    ``landscape.data.place``) and every batch is copied to ``device`` as it is used."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    bn_inputs: torch.Tensor | None = None
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    device: torch.device | None = None

    @property
    def compute_device(self) -> torch.device:
        return self.device or next(iter(self.splits.values()))[0].device

    @property
    def streamed(self) -> bool:
        """Whether batches are copied to the compute device as they are used."""
        return self.device is not None and next(iter(self.splits.values()))[0].device != self.device

    def move(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the compute device (itself when it is there already)."""
        return t if self.device is None else t.to(self.device, non_blocking=True)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of stored inputs as model inputs, on the compute device."""
        x = self.move(x)
        return x if self.decode is None else self.decode(x)


@dataclass(frozen=True)
class GroupResult:
    """Metrics of K points: ``metrics[split][name]`` is a (K,) float64 array
    (``loss`` = mean cross-entropy, ``acc`` = accuracy in percent)."""

    metrics: dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class PathChoice:
    """Which evaluation path the engine uses, and the measured seconds per point behind it."""

    path: str
    seconds_per_point: dict[str, float] = field(default_factory=dict)
    note: str = ""
    workers: int = 1


@dataclass(frozen=True)
class Tuning:
    """The engine settings ``GridEvaluator.tune`` picked and the timings behind them
    (seconds per point, keyed by path and workers, ``batch=N``, ``bn_ghosts=K`` and ``group=K``)."""

    path: str
    batch_size: int
    group_size: int
    seconds_per_point: dict[str, float] = field(default_factory=dict)
    note: str = ""
    workers: int = 1
    bn_ghosts: int = 1


@dataclass
class _Replica:
    """A private model of the loop path, with its parameters and buffers by name, its BN-folded
    view and its BN layers; the loop path's workers each own one. On a GPU a replica also owns
    its stream, the device accumulators of its BN statistics pass and that pass's CUDA graph."""

    model: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    folded: Folded | None
    bn_layers: list[tuple[str, nn.Module]]
    stream: Any = None  # torch.cuda.Stream of this replica's worker (GPU, several workers)
    acc: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    graph: GraphedStep | bool | None = None  # None: not captured yet; False: none
    graph_calls: dict[str, int] = field(default_factory=dict)  # BN calls of one replay

    @classmethod
    def of(cls, model: nn.Module, folded: Folded | None) -> _Replica:
        return cls(model, dict(model.named_parameters()), dict(model.named_buffers()), folded,
                   bn_modules(model))


class _OutOfTime(Exception):
    """A candidate timed by the tuner ran past its time limit (``GridEvaluator._time``)."""


class _Recorder(threading.local):
    """What the BN layers' hooks record during one forward: per thread, since the loop path's
    workers run forwards at the same time. ``on`` switches recording on."""

    def __init__(self) -> None:
        self.on = False
        self.ghosts = False  # the BN layers record themselves (_ghost_bn), not the hooks
        self.events: collections.deque = collections.deque()  # the tuner's pace (_on_time)
        self.records: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.calls: dict[str, int] = {}


class GridEvaluator:
    """Evaluate groups of weight vectors of one architecture on resident data.

    Works on a private copy of ``model``: the caller's model is never modified.

    Args:
        model: any module whose floating-point parameters are described by ``layout``.
        layout: the weight-vector layout (``ParamLayout.of(model)``).
        data: resident evaluation data.
        bn_policy: ``recompute``, ``interpolate`` or ``keep`` (for the last two the caller passes
            the per-point BN buffers to ``evaluate``).
        bn_batch_size: the fixed batch size of BN statistics.
        batch_size: evaluation batch size (does not change the numbers beyond float rounding).
        precision: ``fp32`` (IEEE float32, also on GPUs), ``tf32`` (TF32 tensor cores on GPUs)
            or ``bf16`` (bfloat16 autocast); the last two are faster on recent GPUs and change the
            numbers by an amount the benchmarks measure (``landscape.numerics``).
        channels_last: keep 4-D weights and inputs in channels-last memory format (speed only;
            the vmap path evaluates in the standard format).
        fold_bn: on the loop path, evaluate with every convolution + BN pair fused into one
            layer (``landscape.fold``; checked against the unfused model when built).
        cuda_graphs: on CUDA, replay the loop path's BN statistics forward as a CUDA graph
            (fp32 and tf32; the same kernels, so the same numbers).
        matmul_convs: on a CPU, compute thin 1-D convolutions (a few inputs per output, such as
            a first layer on one channel) as one matrix product (``landscape.thin_conv``;
            checked against the model when built).
        workers: the loop path evaluates this many points of a group at once, each in a thread
            of its own with its own copy of the model. On a CPU the threads share the intra-op
            threads (small models keep two cores busier this way than with two threads per
            operation); on a GPU each queues its work on a CUDA stream of its own, so that the
            small kernels of several points run side by side. None: 1 until ``tune`` measures it.
        bn_ghosts: on a GPU (the loop path's BN pass with sums on the device), run this many
            fixed BN batches in one forward, each normalised with its own statistics ("ghost
            batches"): the same statistics as one batch at a time, from larger kernels.
            Checked against one batch at a time when first used (``ghost_note``); off under
            bf16. None: 1 until ``tune`` measures it (there, one against
            ``evaluation batch // bn_batch_size``).
        cudnn_benchmark: let cuDNN time its algorithms for each new input shape and thread
            (``torch.backends.cudnn.benchmark``), instead of its heuristics. Off by default:
            the engine meets several shapes (each split's last batch, the tuner's slices) on
            several threads, and on a large model each costs a benchmark of every convolution.
            The benchmarks time it as an option.
    """

    def __init__(
        self,
        model: nn.Module,
        layout: ParamLayout,
        data: EvalData,
        *,
        bn_policy: str,
        bn_batch_size: int = 128,
        batch_size: int = 1024,
        precision: str = "fp32",
        channels_last: bool = False,
        fold_bn: bool = True,
        cuda_graphs: bool = True,
        workers: int | None = None,
        matmul_convs: bool = True,
        bn_ghosts: int | None = None,
        cudnn_benchmark: bool = False,
    ) -> None:
        if bn_policy == "recompute" and data.bn_inputs is None:
            raise UserError("BN recompute needs train inputs (EvalData.bn_inputs)")
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        if workers is not None and not (isinstance(workers, int) and workers >= 1):
            raise UserError(f"workers must be a positive integer, got {workers!r}")
        if bn_ghosts is not None and not (isinstance(bn_ghosts, int) and bn_ghosts >= 1):
            raise UserError(f"bn_ghosts must be a positive integer, got {bn_ghosts!r}")
        device = data.compute_device
        self.model = copy.deepcopy(model).to(device).eval().requires_grad_(False)
        self.precision, self.channels_last = precision, channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            data = _channels_last_data(data)
        self.layout, self.data = layout, data
        self.bn_policy, self.bn_batch_size, self.batch_size = bn_policy, bn_batch_size, batch_size
        self.bn_names = [n for n, _ in bn_modules(self.model)]
        self._zeros = {n: torch.zeros(m.num_features, device=device) for n, m in bn_modules(self.model)}
        self._stats_model: nn.Module | None = None
        self._rec = _Recorder()  # BN layers' inputs, recorded by _stats_hook while _rec.on
        self.backoffs: list[str] = []
        self.max_group: int | None = None  # set when a group had to be split for memory
        self._failed_in_bn = False  # the last attempt failed in a BN statistics pass (back-off)
        self._deadline: float | None = None  # while the tuner times a candidate (_time)
        self._tuning_bar = None  # the tuner's progress bar, while it runs
        sample = self.data.batch(next(iter(self.data.splits.values()))[0][:8])
        with numerics("fp32", device):  # the checks compare exact maths, whatever the precision
            thin = matmul_convs and device.type == "cpu"
            self.matmul_convs = use_matmul_convs(self.model, sample) if thin else 0  # before folding: kept
            self._folded = try_fold(self.model, sample) if fold_bn and self.bn_names else None
        self.folded_layers = 0 if self._folded is None else len(self._folded.pairs)
        self._replicas = [_Replica.of(self.model, self._folded)]  # the first is self.model
        self.workers = workers or 1
        self._tune_workers = workers is None  # the user's number is kept
        self._bn_layers = self._replicas[0].bn_layers
        self.cuda_graphs = cuda_graphs
        self.device_sums = device.type == "cuda"  # how the loop path gathers BN statistics
        self.bn_ghosts = bn_ghosts or 1
        self._tune_ghosts = bn_ghosts is None  # the user's number is kept
        self.ghost_note = "not used: the GPU's BN pass only" if self.bn_ghosts > 1 and not self.device_sums else ""
        self.graph_note = ""
        self.cudnn_benchmark = cudnn_benchmark
        self._ghosts_hold: bool | None = None  # checked once (_check_ghosts)
        self._threads: tuple[ThreadPoolExecutor, int] | None = None  # GPU workers' threads, size
        for name, m in self._bn_layers:  # copied along into the vmap path's stats model
            m.register_forward_pre_hook(self._stats_hook(name))

    # ------------------------------------------------------------------ public

    def evaluate(
        self,
        weights: torch.Tensor,
        buffers: Sequence[dict[str, torch.Tensor]] | None = None,
        *,
        path: str = "loop",
        max_samples: int | None = None,
    ) -> GroupResult:
        """Metrics for K points given as (K, P) weight vectors.

        ``buffers`` (one BN-buffer dict per point) is required unless the policy is recompute.
        ``max_samples`` cuts the longest pass to its first samples and every other to the same
        fraction (used only for timing).
        """
        if path not in ("loop", "vmap"):
            raise UserError(f"unknown engine path {path!r}; expected loop or vmap")
        if self.bn_policy != "recompute" and self.bn_names and buffers is None:
            raise UserError(f"BN policy {self.bn_policy!r} needs per-point buffers")
        if self.max_group and len(weights) > self.max_group:  # an earlier group ran out of memory
            k = self.max_group
            parts = [self.evaluate(weights[i : i + k], None if buffers is None else list(buffers[i : i + k]),
                                   path=path, max_samples=max_samples) for i in range(0, len(weights), k)]
            return _concat(parts)
        with torch.no_grad():
            return self._backing_off(weights, buffers, path, max_samples)

    def _backing_off(self, weights, buffers, path, max_samples) -> GroupResult:
        """Evaluate; on out-of-memory halve the evaluation batch, and once it is down to one
        sample split the group of points in two, then retry."""
        run = self._eval_loop if path == "loop" else self._eval_vmap
        self._failed_in_bn = False
        try:
            with numerics(self.precision, self._device, autotune=self.cudnn_benchmark):
                return run(weights, buffers, max_samples)
        except (OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            split = self._back_off(len(weights), exc, path)
        # Retry only here, after the except block: the exception's traceback holds the failed
        # attempt's frames, and with them every activation it had allocated.
        _release_memory(self._device)
        if split:
            return self._split(weights, buffers, path, max_samples)
        return self._backing_off(weights, buffers, path, max_samples)

    def _back_off(self, points: int, exc: BaseException, path: str) -> bool:
        """After out of memory with ``points`` points: halve the loop path's workers or the
        batch (False), or ask for the group to be split (True); a clear error when none of
        these is possible."""
        in_bn, self._failed_in_bn = self._failed_in_bn, False
        if in_bn and path == "loop" and self.ghosts_in_use > 1:  # k times the BN pass's activations
            self._drop_ghosts("out of memory")
            self.backoffs.append("out of memory: the BN pass runs one fixed batch a forward from now on")
            return False
        running = min(self.workers, points) if path == "loop" else 1
        if running > 1:  # fewer points at once need fewer activations (and CUDA graphs)
            self.workers = running // 2
            self._keep_replicas(self.workers)
            self.backoffs.append(f"out of memory: {self.workers} point{'s' * (self.workers > 1)} "
                                 "at once from now on")
            return False
        if in_bn:  # BN statistics use fixed batches: only fewer points at once help
            if points == 1:
                raise UserError(
                    f"out of memory in the BN statistics pass (batches of --bn-batch-size "
                    f"{self.bn_batch_size}) even for one point; use another device, or a smaller "
                    "--bn-batch-size (which changes the numbers)") from exc
            return True
        if self.batch_size > 1:
            self.batch_size //= 2
            self.backoffs.append(f"out of memory: evaluation batch halved to {self.batch_size}")
            return False
        if points == 1:
            raise UserError("out of memory even with one point and a batch of one sample; "
                            "use a smaller --train-subset/--test-subset or another device") from exc
        return True

    def _split(self, weights, buffers, path, max_samples) -> GroupResult:
        """Evaluate the group in two halves; later groups are cut to that size from the start."""
        half = len(weights) // 2
        self.max_group = min(self.max_group or half, half)
        self.backoffs.append(f"out of memory: group of {len(weights)} points split in two "
                             f"(groups of at most {self.max_group} from now on)")
        first = self._backing_off(weights[:half], _head(buffers, half), path, max_samples)
        rest = self._backing_off(weights[half:], None if buffers is None else list(buffers[half:]),
                                 path, max_samples)
        return _concat([first, rest])

    def tuning_key(self) -> dict[str, Any]:
        """What a recorded tuning depends on: a resumed run reuses it only when this matches."""
        device = self._device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        key = {"device": f"{device.type} ({name})", "precision": self.precision,
               "channels_last": self.channels_last, "bn_batch_size": self.bn_batch_size}
        if device.type == "cpu":  # the loop path's worker threads share the intra-op threads
            key["threads"] = torch.get_num_threads()
        if self.data.streamed:  # absent when resident, as in files of earlier versions
            key["data"] = "host memory"
        key["workers"] = "measured" if self._tune_workers else self.workers
        if not self._tune_ghosts:  # absent when tuned, as in files of earlier versions
            key["bn_ghosts"] = self.bn_ghosts
        return key

    def tune(
        self,
        weights: torch.Tensor,
        buffers: Sequence[dict[str, torch.Tensor]] | None = None,
        *,
        path: str = "auto",
        group_sizes: Sequence[int] = (),
    ) -> Tuning:
        """Pick the path (unless given), then the evaluation batch size among a quarter, one and
        four times the current one, then (vmap only) the group size among ``group_sizes``, each
        by timing a slice of the data on this group of points. Sets ``batch_size``. A progress
        bar (when switched on) counts the timings."""
        with progress(total=None, desc="tuning the engine", unit=" timings") as bar:
            self._tuning_bar = bar
            try:
                return self._tune(weights, buffers, path, group_sizes)
            finally:
                self._tuning_bar = None

    def _tune(self, weights, buffers, path: str, group_sizes: Sequence[int]) -> Tuning:
        if path == "auto":
            choice = self.choose_path(weights, buffers)
            path, timings, note = choice.path, dict(choice.seconds_per_point), choice.note
            self.workers = choice.workers
        else:
            timings, note = {}, ""
        longest = max(len(x) for x, _ in self.data.splits.values())
        sizes = sorted({min(max(1, b), longest) for b in
                        (self.batch_size // 4, self.batch_size, self.batch_size * 4)})
        n = self.workers if path == "loop" else len(weights)  # loop: as many points as run at once
        probe, samples = (weights[:n], _head(buffers, n)), min(longest, max(sizes))
        per_size, notes = _race("batch", sizes, n, lambda size, limit: self._time_candidate(
            probe, path, size, samples, limit))
        timings.update({f"batch={size}": t for size, t in sorted(per_size.items())})
        self.batch_size = min(per_size, key=per_size.get) if per_size else self.batch_size
        if path == "loop" and self._ghost_candidates():
            notes += self._tune_ghosts_(probe, samples, timings)
        note = "; ".join(filter(None, [note, *notes]))
        group = len(weights)
        if path == "vmap" and group_sizes:
            per_group = {}
            for k in sorted(set(group_sizes)):
                w = weights[:k] if k <= len(weights) else weights[torch.arange(k) % len(weights)]
                b = None if buffers is None else [buffers[i % len(buffers)] for i in range(k)]
                per_group[k] = self._time(w, b, path, self.batch_size, samples=self.batch_size)
                timings[f"group={k}"] = per_group[k]
            group = min(per_group, key=per_group.get)
        return Tuning(path, self.batch_size, group, timings, note, self.workers if path == "loop" else 1,
                      self.ghosts_in_use if path == "loop" else 1)

    def _ghost_candidates(self) -> tuple[int, ...]:
        """The ghost-batch counts the tuner times: one fixed BN batch a forward, and as many
        as make an evaluation batch; () where ghost batches cannot run or the user set them."""
        inputs, b = self.data.bn_inputs, self.bn_batch_size
        k = min(max(2, self.batch_size // b), 0 if inputs is None else len(inputs) // b)
        usable = (self._tune_ghosts and self.device_sums and self.bn_policy == "recompute"
                  and self.precision != "bf16" and self._bn_layers and k >= 2)
        return (1, k) if usable else ()

    def _tune_ghosts_(self, probe, samples: int, timings: dict[str, float]) -> list[str]:
        """Time the loop path with each of ``_ghost_candidates`` and keep the fastest that
        holds for this model; its timings go into ``timings``. Returns the notes of the
        candidates that are out (why ghost batches are not used)."""

        def time_count(k: int, limit: float | None) -> tuple[float | None, str | None]:
            self.use_ghosts(k)
            logged = len(self.backoffs)
            t, why = self._time_candidate(probe, "loop", self.batch_size, samples, limit)
            if k > 1 and self._ghosts_hold is False:  # it ran one batch at a time, or stopped
                why = self.ghost_note  # "not used: ...", out of memory too
                del self.backoffs[logged:]  # a candidate out, not a back-off from now on
            return t, why

        per_count, notes = _race("bn_ghosts", self._ghost_candidates(), len(probe[0]), time_count)
        timings.update({f"bn_ghosts={k}": t for k, t in sorted(per_count.items())})
        self.use_ghosts(min(per_count, key=per_count.get) if per_count else 1)
        return notes

    def _time(self, weights, buffers, path, batch_size, *, samples, limit: float | None = None) -> float:
        """Seconds per point of evaluating ``samples`` samples of every split (and of the BN
        inputs) at this batch size, after a warm-up. ``limit``: raise ``_OutOfTime`` once the
        timed run has taken that many seconds, or the warm-up three times as long (it also makes
        the workers' replicas and CUDA graphs): a candidate that cannot win."""
        previous, self.batch_size = self.batch_size, batch_size
        n = self.workers if path == "loop" else 1  # the warm-up also makes the workers' replicas
        try:
            for points, max_samples, allowed in ((n, batch_size, 3), (len(weights), samples, 1)):
                start = time.perf_counter()
                self._deadline = None if limit is None else start + allowed * limit
                self.evaluate(weights[:points], _head(buffers, points), path=path, max_samples=max_samples)
            return (time.perf_counter() - start) / len(weights)
        finally:
            self._deadline = None
            self._rec.events.clear()
            self.batch_size = previous
            if self._tuning_bar is not None:  # stopped or not (Ctrl-C is raised here too)
                self._tuning_bar.update(1)

    def _time_candidate(self, probe, path: str, batch_size: int, samples: int, limit: float | None
                        ) -> tuple[float | None, str | None]:
        """``_time`` for the tuner: (seconds per point, None), or (None, why the candidate is out).
        A candidate that ran out of memory with its number of points at once is out; the
        workers halved meanwhile are restored, and the back-off is not kept as "from now on"."""
        workers, logged = self.workers, len(self.backoffs)
        t, why = None, None
        try:
            t = self._time(*probe, path, batch_size, samples=samples, limit=limit)
        except _OutOfTime:
            why = f"stopped after {TUNING_LIMIT:g}x the fastest's time"
        if self.workers < workers:
            self.workers = workers
            del self.backoffs[logged:]
            why = "dropped: out of memory"
        return t, why

    def _on_time(self) -> None:
        """Called once a batch by every pass: stops a timed candidate past its limit. On a GPU
        the host could queue a whole pass ahead of the device, so while a limit is set each
        call also waits until the device has finished the batch before last."""
        if self._deadline is None:
            return
        if self._device.type == "cuda":
            events = self._rec.events  # this thread's
            events.append(torch.cuda.Event())
            events[-1].record(torch.cuda.current_stream(self._device))
            if len(events) > 2:
                events.popleft().synchronize()
        if time.perf_counter() > self._deadline:
            raise _OutOfTime

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of inputs ready for the model (``EvalData.batch``), checked against the
        tuner's time limit."""
        self._on_time()
        return self.data.batch(x)

    def choose_path(
        self, weights: torch.Tensor, buffers: Sequence[dict[str, torch.Tensor]] | None = None
    ) -> PathChoice:
        """Time both paths on a slice of the data for this group of points, and the loop path
        with several workers (``worker_candidates``); pick the fastest. Each candidate is timed
        twice, interleaved, and keeps its best time, so that a moment of load on a shared
        machine does not decide."""
        timings: dict[str, float] = {}
        samples = 2 * self.batch_size
        candidates = {"loop": ("loop", 1)}
        if not self._tune_workers:
            candidates["loop"] = ("loop", self.workers)
        else:
            candidates.update(worker_candidates(self._device.type, torch.get_num_threads(), len(weights)))
        candidates["vmap"] = ("vmap", 1)  # last: on large models it can be many times slower
        previous, skip, notes = self.workers, set(), []
        try:
            for _ in range(2):
                for label, (path, self.workers) in candidates.items():
                    if label in skip:
                        continue
                    try:
                        t, why = self._time_candidate((weights, buffers), path, self.batch_size, samples,
                                                      _limit(timings.values(), len(weights)))
                    except (RuntimeError, NotImplementedError) as exc:  # e.g. a model vmap cannot batch
                        notes.append(f"{path} unavailable: {str(exc).splitlines()[0][:160]}")
                        skip.update(lb for lb, (p, _) in candidates.items() if p == path)
                        continue
                    if _keep_best(timings, label, t, why):
                        notes.append(f"{label} {why}")
                        skip.add(label)
        finally:
            self.workers = previous
        note = "; ".join(notes)
        if not timings:
            raise RuntimeError(f"no evaluation path works for this model ({note})")
        best = min(timings, key=timings.get)
        self._keep_replicas(candidates[best][1] if candidates[best][0] == "loop" else 1)
        return PathChoice(candidates[best][0], timings, note, candidates[best][1])

    # ------------------------------------------------------------------ loop path

    def _eval_loop(self, weights, buffers, max_samples) -> GroupResult:
        k = len(weights)
        out = {s: {"loss": np.empty(k), "acc": np.empty(k)} for s in self.data.splits}

        def point(i: int, replica: _Replica) -> None:
            self._load(weights[i], None if buffers is None else buffers[i], replica)
            if self.bn_policy == "recompute" and self._bn_layers:
                with self._bn_pass():
                    self._loop_bn_stats_(max_samples, replica)
            model = replica.model if replica.folded is None else replica.folded.refresh()
            for split, (x, y) in self.data.splits.items():
                loss, acc = self._eval_split(model, x, y, max_samples, k=None)
                out[split]["loss"][i], out[split]["acc"][i] = loss[0], acc[0]

        workers = min(self.workers, k)
        if workers == 1:
            for i in range(k):
                point(i, self._replicas[0])
        else:
            self._in_threads(point, k, workers)
        return GroupResult(out)

    def _in_threads(self, point: Callable[[int, _Replica], None], k: int, workers: int) -> None:
        """Points 0..k-1 on ``workers`` threads, each with its own replica of the model and its
        share of the device (``_shared_out``). After a failure or an interrupt the other threads
        stop at their next point."""
        replicas = [self._replica(j) for j in range(workers)]
        self._capture_graphs(replicas)
        stop = threading.Event()

        def work(j: int) -> None:
            replica = replicas[j]
            with torch.no_grad(), numerics(self.precision, self._device, autotune=self.cudnn_benchmark), \
                    _on(replica.stream):  # per thread
                for i in range(j, k, workers):
                    if stop.is_set():
                        return
                    point(i, replica)

        with self._shared_out(replicas), self._pool(workers) as pool:
            futures = [pool.submit(work, j) for j in range(workers)]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:  # a failed point, or Ctrl-C in this thread: the others stop at their next
                stop.set()
                wait(futures)
            errors = [e for f in futures if (e := f.exception()) is not None]
            if errors:  # a real error before the tuner's time limit, which only stops the others
                raise next((e for e in errors if not isinstance(e, _OutOfTime)), errors[0])

    @contextlib.contextmanager
    def _pool(self, workers: int):
        """Threads for ``workers`` workers. On a CPU new ones each time: a new thread takes the
        intra-op thread count set just before. On a GPU the same ones for the evaluator's life:
        cuDNN keeps its tuned convolution plans per thread, so new threads would tune again."""
        if self._device.type != "cuda":
            with ThreadPoolExecutor(workers, thread_name_prefix="landscape-point") as pool:
                yield pool
            return
        if self._threads is None or self._threads[1] < workers:
            if self._threads is not None:
                self._threads[0].shutdown()
            size = max(workers, 8)
            self._threads = ThreadPoolExecutor(size, thread_name_prefix="landscape-point"), size
        yield self._threads[0]

    @contextlib.contextmanager
    def _shared_out(self, replicas: list[_Replica]):
        """The device shared out between the workers of ``replicas``. On a CPU: an equal share
        of the intra-op threads each (new threads take the process's setting; restored
        afterwards). On a GPU: a stream each, ordered after the work queued before and before
        the work queued after."""
        if self._device.type != "cuda":
            threads = torch.get_num_threads()
            torch.set_num_threads(max(1, threads // len(replicas)))
            try:
                yield
            finally:
                torch.set_num_threads(threads)
            return
        current = torch.cuda.current_stream(self._device)
        for r in replicas:
            r.stream.wait_stream(current)
        try:
            yield
        finally:
            for r in replicas:
                current.wait_stream(r.stream)

    def _keep_replicas(self, n: int) -> None:
        """Drop the replicas (with their CUDA graphs) beyond the first ``n``: the tuner makes
        as many as its largest candidate needs."""
        if len(self._replicas) > n:
            del self._replicas[max(1, n) :]
            _release_memory(self._device)

    def _replica(self, j: int) -> _Replica:
        while len(self._replicas) <= j:
            model = copy.deepcopy(self.model)
            folded = None if self._folded is None else Folded(model, self._folded.pairs)
            self._replicas.append(_Replica.of(model, folded))
        replica = self._replicas[j]
        if replica.stream is None and self._device.type == "cuda":
            replica.stream = torch.cuda.Stream(self._device)
        return replica

    def _loop_bn_stats_(self, max_samples, replica: _Replica | None = None) -> None:
        """Recompute the replica's BN statistics in place, over the fixed batches.

        On a CPU this is ``recompute_bn_`` (BN's own cumulative average, the fastest there). On
        a GPU that average would read ``num_batches_tracked`` back to the host in every layer on
        every batch, stalling the queue dozens of times a batch, so the same averages are
        summed on the device instead, and the per-batch forward is replayed as a CUDA graph
        (``landscape.cuda_graph``). Both give the same numbers to float rounding."""
        replica = replica or self._replicas[0]
        inputs = self._limit(self.data.bn_inputs, max_samples)
        if not self.device_sums:
            recompute_bn_(replica.model, inputs, batch_size=self.bn_batch_size, transform=self._batch)
            return
        self._check_ghosts()
        with self._batch_stats(replica):
            acc, calls = self._bn_sums(replica, inputs)
        for name, m in replica.bn_layers:
            m.reset_running_stats()  # a layer the forward never used keeps reset statistics
            if calls.get(name):
                m.running_mean.copy_(acc[name][0] / calls[name])
                m.running_var.copy_(acc[name][1] / calls[name])
                m.num_batches_tracked.fill_(calls[name])

    @contextlib.contextmanager
    def _batch_stats(self, replica: _Replica, ghosts: int | None = None):
        """The replica's BN layers normalise with batch statistics and update nothing, while
        this thread records their inputs; with ``ghosts`` > 1 (default: ``ghosts_in_use``)
        they take that many fixed batches at once (``_ghost_bn``)."""
        ghosts = self.ghosts_in_use if ghosts is None else ghosts
        for name, m in replica.bn_layers:
            m.train()
            m.track_running_stats = False
            if ghosts > 1:  # an instance attribute: this replica's layers only
                m.forward = functools.partial(_ghost_bn, m, name, self._rec, self.bn_batch_size)
        self._rec.on, self._rec.ghosts = True, ghosts > 1
        try:
            yield
        finally:
            self._rec.on = self._rec.ghosts = False
            for _, m in replica.bn_layers:
                m.__dict__.pop("forward", None)
                m.track_running_stats = True
                m.eval()

    def _bn_rows(self) -> int:
        """Rows per forward of the GPU's BN pass, and of its CUDA graphs' input."""
        return self.ghosts_in_use * self.bn_batch_size

    def _check_ghosts(self) -> None:
        """Once, before any BN graph is captured (only the GPU's BN pass gets here; off it,
        ``ghost_note`` says so from the start): whether ghost batches give this model the
        statistics of one batch at a time (not so for a model whose BN layers see rows of
        several inputs at once). Compared on the first fixed batches of the BN inputs."""
        if self._ghosts_hold is not None:
            return
        inputs, b = self.data.bn_inputs, self.bn_batch_size
        k = min(self.bn_ghosts, 0 if inputs is None else len(inputs) // b)
        why = ("" if self.bn_ghosts == 1 else "not used: off under bf16" if self.precision == "bf16"
               else "not used: fewer than 2 fixed BN batches" if k < 2 or not self._bn_layers else None)
        if why is not None:
            self._ghosts_hold, self.ghost_note = False, why
            return
        agree = None
        try:
            agree = self._ghosts_agree(k)
        except (OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
        if agree is None:
            _release_memory(self._device)  # after the except block: its traceback held the tensors
        self._ghosts_hold = bool(agree)
        self.ghost_note = (f"{self.bn_ghosts} fixed batches a forward" if agree else
                           "not used: out of memory while checked" if agree is None else
                           "not used: its BN statistics differ from one batch at a time")

    def _ghosts_agree(self, k: int) -> bool:
        """Whether k fixed batches in one forward record what they record one at a time."""
        replica, b = self._replicas[0], self.bn_batch_size
        acc, step, sums = self._accumulators(replica), self._bn_step(replica), []
        for ghosts in (1, k):
            _zero(acc)
            with self._batch_stats(replica, ghosts):
                for xb in _bn_pieces(self.data.bn_inputs[: k * b], b, ghosts * b):
                    step(xb)
            sums.append([t.clone() for pair in acc.values() for t in pair])
        return all(torch.allclose(a, c, rtol=1e-4, atol=1e-6) for a, c in zip(*sums))

    @property
    def ghosts_in_use(self) -> int:
        """Fixed BN batches a forward in the GPU's BN pass: ``bn_ghosts`` where that pass runs
        and they hold (not yet checked: ``bn_ghosts``), else 1."""
        runs = self.device_sums and self.bn_policy == "recompute" and bool(self._bn_layers)
        return self.bn_ghosts if runs and self._ghosts_hold is not False else 1

    def use_ghosts(self, k: int) -> None:
        """k fixed BN batches a forward from now on (checked again when next used; the BN
        graphs are made again for the new size): the tuner's choice, or a resumed run's."""
        if k == self.ghosts_in_use:
            return
        self.bn_ghosts, self._ghosts_hold, self.ghost_note = k, None, ""
        self._forget_graphs()

    def _drop_ghosts(self, why: str) -> None:
        """One fixed batch a forward from now on; the BN graphs, captured for k, are made again."""
        self._ghosts_hold, self.ghost_note = False, f"not used: {why}"
        self._forget_graphs()

    def _forget_graphs(self) -> None:
        """The BN graphs are made again when next needed (their input size changed)."""
        self.graph_note = ""
        for replica in self._replicas:
            replica.graph = None

    def _bn_sums(self, replica: _Replica, inputs: torch.Tensor
                 ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, int]]:
        """Each BN layer's sums of batch means and variances over the fixed batches, and how
        often it ran. Full batches go through the CUDA graph when there is one."""
        acc, step = self._accumulators(replica), self._bn_step(replica)
        calls: dict[str, int] = {}
        chunk = self._bn_rows()
        graph = self._bn_graph(replica, inputs[:chunk]) if len(inputs) >= chunk else None
        _zero(acc)
        for xb in _bn_pieces(inputs, self.bn_batch_size, chunk):
            self._on_time()
            if graph is not None and len(xb) == chunk:
                graph(xb)
                counts = replica.graph_calls
            else:
                step(xb)
                counts = self._rec.calls
            for name, c in counts.items():
                calls[name] = calls.get(name, 0) + c
        return acc, calls

    def _accumulators(self, replica: _Replica) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if replica.acc is None:
            replica.acc = {name: (torch.zeros(m.num_features, device=self._device),
                                  torch.zeros(m.num_features, device=self._device))
                           for name, m in replica.bn_layers}
        return replica.acc

    def _bn_step(self, replica: _Replica) -> Callable[[torch.Tensor], None]:
        """One fixed batch of the BN pass: a forward of the replica whose BN inputs
        ``_stats_hook`` records, added to the replica's accumulators."""
        acc, rec = self._accumulators(replica), self._rec  # rec's fields are the calling thread's

        def step(xb: torch.Tensor) -> None:
            rec.records.clear()
            rec.calls.clear()
            replica.model(self.data.batch(xb))
            for name, (mean, var) in rec.records.items():
                acc[name][0].add_(mean)
                acc[name][1].add_(var)

        return step

    def _capture_graphs(self, replicas: list[_Replica]) -> None:
        """Capture the replicas' BN graphs one after the other on this thread, before their
        workers start: a capture must not overlap other threads' work on the GPU."""
        inputs = self.data.bn_inputs
        if self.bn_policy != "recompute" or not self.device_sums or inputs is None:
            return
        self._check_ghosts()  # decides the graphs' input size
        chunk = self._bn_rows()
        if self._bn_layers and len(inputs) >= chunk:
            for replica in replicas:
                with self._batch_stats(replica):
                    self._bn_graph(replica, inputs[:chunk])

    def _bn_graph(self, replica: _Replica, example: torch.Tensor) -> GraphedStep | None:
        """The replica's BN step as a CUDA graph, captured once and checked against the eager
        step on one batch (None off CUDA, under bf16 autocast, or when capture or check fails:
        then every batch runs eagerly, with the same numbers)."""
        if not (self.cuda_graphs and self._device.type == "cuda" and self.precision != "bf16"):
            return None
        if replica.graph is None:
            step, example = self._bn_step(replica), self.data.move(example)  # the graph's input lives on the GPU
            try:
                graph = GraphedStep(step, example)
                replica.graph_calls = dict(self._rec.calls)  # what one forward records
                replica.graph = graph if _same_sums(graph, step, example, replica.acc) else False
                if not replica.graph:
                    self.graph_note = "not used: its BN sums differ from the eager step's"
            except RuntimeError as exc:  # out of memory too: the eager step needs less
                replica.graph = False
                self.graph_note = f"not used: {str(exc).splitlines()[0][:160]}"
            self.graph_note = self.graph_note or "used"  # a replica's failure stays visible
        return replica.graph or None

    def _load(self, w: torch.Tensor, buffers: dict[str, torch.Tensor] | None,
              replica: _Replica | None = None) -> None:
        replica = replica or self._replicas[0]
        w = w.to(self._device, torch.float32)  # one copy to the device, then copies on it
        for name, t in self.layout.unflatten(w).items():
            replica.params[name].copy_(t)
        for name, t in (buffers or {}).items():
            replica.buffers[name].copy_(t)

    # ------------------------------------------------------------------ vmap path

    def _eval_vmap(self, weights, buffers, max_samples) -> GroupResult:
        device = self._device
        params = self.layout.unflatten(weights.to(device))  # name -> (K, *shape)
        if self.bn_policy == "recompute" and self.bn_names:
            with self._bn_pass():
                bufs = self._vmap_bn_stats(params, max_samples)
        elif buffers is not None and buffers[0]:
            bufs = {n: torch.stack([b[n] for b in buffers]).to(device) for n in buffers[0]}
        else:
            bufs = {}

        def one(p, b, x):
            return functional_call(self.model, (p, b), (x,))

        fn = vmap(one, in_dims=(0, 0, None))
        out = {}
        for split, (x, y) in self.data.splits.items():
            loss, acc = self._eval_split(lambda xb: fn(params, bufs, _standard(xb)), x, y, max_samples,
                                         k=len(weights))
            out[split] = {"loss": loss, "acc": acc}
        return GroupResult(out)

    def _vmap_bn_stats(self, params, max_samples) -> dict[str, torch.Tensor]:
        """Cumulative BN statistics for K stacked weight sets: the mean, over every call of a
        layer in every fixed batch, of the batch mean and unbiased variance, which is exactly
        what momentum=None accumulates. Statistics are keyed by layer name, so layers that run
        in another order than they are registered, or run twice, are handled."""
        model = self._get_stats_model()

        rec = self._rec

        def one(p, x):
            rec.records.clear()
            rec.calls.clear()
            functional_call(model, p, (x,))
            return tuple(t for name in self.bn_names for t in rec.records.get(
                name, (self._zeros[name], self._zeros[name])))

        fn = vmap(one, in_dims=(0, None))
        sums: list[torch.Tensor] | None = None
        calls: dict[str, int] = {}
        rec.on = True
        try:
            for xb in fixed_batches(self._limit(self.data.bn_inputs, max_samples), self.bn_batch_size):
                stats = fn(params, _standard(self._batch(xb)))
                sums = list(stats) if sums is None else [s + t for s, t in zip(sums, stats)]
                for name in self.bn_names:  # recorded on the last call of `one`
                    calls[name] = calls.get(name, 0) + rec.calls.get(name, 0)
        finally:
            rec.on = False
        k = len(next(iter(params.values())))
        out = {}
        for j, name in enumerate(self.bn_names):
            prefix = f"{name}." if name else ""
            n = calls[name]
            if n == 0:  # a layer the forward never used keeps its reset statistics
                continue
            out[prefix + "running_mean"] = sums[2 * j] / n
            out[prefix + "running_var"] = sums[2 * j + 1] / n
            out[prefix + "num_batches_tracked"] = torch.full((k,), n, dtype=torch.long,
                                                             device=self._device)
        return out

    def _get_stats_model(self) -> nn.Module:
        if self._stats_model is None:
            model = copy.deepcopy(self.model)
            layers = dict(bn_modules(model))
            replace_all_batch_norm_modules_(model)  # BN normalises with batch statistics
            model.eval()
            for m in layers.values():  # _stats_hook came along with the copy
                m.train()
            self._stats_model = model
        return self._stats_model

    def _stats_hook(self, name: str):
        owner = weakref.ref(self)  # the model must not keep its evaluator alive (GPU memory)

        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self = owner()
            if self is None or not self._rec.on or self._rec.ghosts:
                return
            _record_batch(self._rec, name, args[0])  # this thread's records

        return record

    # ------------------------------------------------------------------ shared

    def _limit(self, x: torch.Tensor, max_samples: int | None) -> torch.Tensor:
        """The first samples of a pass, for timing: the longest pass (BN inputs or split) is cut
        to ``max_samples`` and every other to the same fraction, so that a timed slice weighs
        the passes as the full evaluation does."""
        if max_samples is None:
            return x
        longest = max([len(x) for x, _ in self.data.splits.values()] +
                      [0 if self.data.bn_inputs is None else len(self.data.bn_inputs)])
        return x[: max(2, -(-len(x) * max_samples // longest))]

    @contextlib.contextmanager
    def _bn_pass(self):
        """Marks a BN statistics pass: an error inside it is remembered for the out-of-memory
        back-off, which reads and clears the mark."""
        try:
            yield
        except BaseException:
            self._failed_in_bn = True
            raise

    @property
    def _device(self) -> torch.device:
        return self.data.compute_device

    @property
    def data_placement(self) -> str:
        """Where the evaluation data lives, for the record."""
        return "host memory, copied to the device batch by batch" if self.data.streamed else "on the device"

    def _eval_split(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        max_samples: int | None,
        *,
        k: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean cross-entropy and accuracy (%) over the split; logits are (B, C) for the loop
        path (k None) or (K, B, C) for the vmap path."""
        kk = 1 if k is None else k
        loss_sum = torch.zeros(kk, dtype=torch.float64, device=self._device)
        correct = torch.zeros(kk, dtype=torch.long, device=self._device)
        n = 0
        x = self._limit(x, max_samples)
        y = y[: len(x)]
        for start in range(0, len(x), self.batch_size):
            xb = self._batch(x[start : start + self.batch_size])
            yb = self.data.move(y[start : start + self.batch_size])
            logits = fn(xb).float().reshape(kk, len(yb), -1)  # (K, B, C)
            ce = F.cross_entropy(logits.flatten(0, 1), yb.repeat(kk), reduction="none")
            loss_sum += ce.view(kk, -1).double().sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
            n += len(yb)
        if n == 0:
            raise UserError("cannot evaluate on an empty split")
        return (loss_sum / n).cpu().numpy(), (100.0 * correct.double() / n).cpu().numpy()


def _race(name: str, candidates: Sequence[int], points: int,
          time_one: Callable[[int, float | None], tuple[float | None, str | None]]
          ) -> tuple[dict[int, float], list[str]]:
    """Time each candidate twice, interleaved, keeping its best time (see ``choose_path``), each
    with the time limit that the fastest so far sets for ``points`` points. ``time_one(c,
    limit)`` gives (seconds per point, None) or (None, why it is out): then it is not timed
    again. Returns the times and a note ("name c why") for each candidate out."""
    times: dict[int, float] = {}
    out: set[int] = set()
    notes: list[str] = []
    for _ in range(2):
        for c in [c for c in candidates if c not in out]:
            t, why = time_one(c, _limit(times.values(), points))
            if _keep_best(times, c, t, why):
                out.add(c)
                notes.append(f"{name} {c} {why}")
    return times, notes


def _keep_best(times: dict, key, t: float | None, why: str | None) -> bool:
    """Keep a tuner candidate's best time in ``times``; True when ``why`` puts it out of the
    running (its times removed, even from the first round). A second timing stopped by its
    time limit is a moment of load: the first one stands."""
    if why is None:
        times[key] = min(t, times.get(key, float("inf")))
        return False
    if why.startswith("stopped") and key in times:
        return False
    times.pop(key, None)
    return True


def _limit(seconds_per_point: Iterable[float], points: int) -> float | None:
    """The time limit of the tuner's next candidate: ``TUNING_LIMIT`` times the fastest
    candidate's time so far (None before the first), for ``points`` points."""
    best = min(seconds_per_point, default=None)
    return None if best is None else TUNING_LIMIT * best * points


def worker_candidates(device_type: str, threads: int, points: int) -> dict[str, tuple[str, int]]:
    """The loop path's worker counts ``--engine auto`` times besides one, as {label: ("loop",
    workers)}: on a CPU one worker per intra-op thread; on a GPU 2, 4 and 8 streams (the
    workers' small kernels run side by side). Never more workers than points."""
    if device_type == "cpu":
        counts = [min(threads, points)]
    else:
        counts = [n for n in (2, 4, 8) if n <= points]
    unit = "workers" if device_type == "cpu" else "streams"
    return {f"loop, {n} {unit}": ("loop", n) for n in counts if n > 1}


def _channels_last_data(data: EvalData) -> EvalData:
    """``data`` with its 4-D inputs in channels-last format, each tensor converted once (the
    BN inputs are usually the train inputs themselves)."""
    done: dict[int, torch.Tensor] = {}

    def convert(x: torch.Tensor) -> torch.Tensor:
        if id(x) not in done:
            done[id(x)] = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        return done[id(x)]

    return EvalData({s: (convert(x), y) for s, (x, y) in data.splits.items()},
                    None if data.bn_inputs is None else convert(data.bn_inputs), data.decode, data.device)


def _concat(parts: Sequence[GroupResult]) -> GroupResult:
    first = parts[0].metrics
    return GroupResult({s: {m: np.concatenate([p.metrics[s][m] for p in parts]) for m in first[s]}
                        for s in first})


def _zero(acc: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for pair in acc.values():
        for t in pair:
            t.zero_()


def _record_batch(rec: _Recorder, name: str, x: torch.Tensor) -> None:
    """Record the batch mean and unbiased variance of a BN layer's input ``x`` (in fp32, also
    under bf16 autocast; over every dim but channels)."""
    var, mean = torch.var_mean(x.float(), [0, *range(2, x.dim())], correction=1)
    _add_record(rec, name, mean, var, 1)


def _add_record(rec: _Recorder, name: str, mean: torch.Tensor, var: torch.Tensor, calls: int) -> None:
    """Record a BN layer's batch means and unbiased variances (summed over ``calls`` batches);
    a layer that runs again in the same forward adds to its record."""
    if name in rec.records:
        prev_mean, prev_var = rec.records[name]
        mean, var = prev_mean + mean, prev_var + var
    rec.records[name] = (mean, var)
    rec.calls[name] = rec.calls.get(name, 0) + calls


def _ghost_bn(m: nn.Module, name: str, rec: _Recorder, batch: int, x: torch.Tensor) -> torch.Tensor:
    """``m``'s train-mode forward on several fixed batches of ``batch`` rows at once, each
    normalised with its own statistics ("ghost batches"), recording what the hooks would record
    for each batch. Anything else (one batch, a shorter last one) runs as BN itself does."""
    n = x.shape[0]
    if n % batch or n == batch:
        _record_batch(rec, name, x)
        return type(m).forward(m, x)
    g = n // batch
    v = x.view(g, batch, *x.shape[1:])  # (batches, rows, channels, ...)
    var, mean = torch.var_mean(v, [1, *range(3, v.dim())], correction=0, keepdim=True)
    per_channel = v[0].numel() // v.shape[2]
    _add_record(rec, name, mean.sum(0).flatten(), var.sum(0).flatten() * (per_channel / (per_channel - 1)), g)
    shape = [1, 1, -1] + [1] * (v.dim() - 3)
    scale = torch.rsqrt(var + m.eps)
    if m.weight is not None:
        scale = scale * m.weight.view(shape)
    shift = -mean * scale
    if m.bias is not None:
        shift = shift + m.bias.view(shape)
    return torch.addcmul(shift, v, scale).reshape(x.shape)


def _bn_pieces(inputs: torch.Tensor, batch: int, chunk: int) -> Iterator[torch.Tensor]:
    """``inputs`` as whole chunks of ``chunk`` rows, then the rest of the whole fixed batches
    in one piece, then the last, shorter batch: each piece holds whole fixed batches or one."""
    full, whole = len(inputs) // chunk * chunk, len(inputs) // batch * batch
    for start in range(0, full, chunk):
        yield inputs[start : start + chunk]
    if whole > full:
        yield inputs[full:whole]
    if len(inputs) > whole:
        yield inputs[whole:]


def _same_sums(graph: GraphedStep, step, x: torch.Tensor, acc) -> bool:
    """Whether one replay of ``graph`` adds what one eager ``step`` adds to ``acc``."""
    results = []
    for run in (graph, step):
        _zero(acc)
        run(x)
        results.append([t.clone() for pair in acc.values() for t in pair])
    return all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*results))


def _on(stream) -> contextlib.AbstractContextManager:
    """Queue this thread's GPU work on ``stream``, with the stream's device current (a new
    thread starts on device 0); nothing to do without a stream."""
    stack = contextlib.ExitStack()
    if stream is not None:
        stack.enter_context(torch.cuda.device(stream.device))
        stack.enter_context(torch.cuda.stream(stream))
    return stack


def _standard(x: torch.Tensor) -> torch.Tensor:
    """Inputs of the vmap path in the standard memory format: inside vmap, CUDA batch norm
    cannot query a channels-last layout (channels-last speeds up the loop path only)."""
    return x.contiguous()


def _is_oom(exc: BaseException) -> bool:
    """Out of memory, as PyTorch, cuDNN and cuBLAS word it."""
    text = str(exc).lower()
    return isinstance(exc, OutOfMemoryError) or any(
        s in text for s in ("out of memory", "can't allocate memory", "cudnn_status_alloc_failed",
                            "cublas_status_alloc_failed"))


def _release_memory(device: torch.device) -> None:
    """Free what a failed attempt held. A worker thread's exception sits in a reference cycle
    (its future, its traceback, the frame that holds the futures), which only the cycle collector
    breaks; then the freed GPU blocks go back to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _head(buffers, n):
    return None if buffers is None else list(buffers[:n])
