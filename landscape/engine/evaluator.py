"""The batched grid evaluator: the engine's front (docs/architecture.md, "The engine").

A group of K weight vectors is evaluated by one of two strategies: ``loop`` loads each weight
set into a private copy of the model in turn (``landscape.engine.loop``), ``vmap`` stacks them
and maps the model over them (``landscape.engine.vmap``). Both give the numbers of the naive
per-point loop to float tolerance. The settings they run with (``EngineSettings``: strategy,
batch and group size, workers, ghost batches) are chosen by the tuner (``tune``) or given, and
changed by the out-of-memory back-off (``landscape.engine.backoff``) instead of failing; none of
them changes the numbers beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape.engine.backoff import back_off
from landscape.engine.bn import bn_modules
from landscape.engine.core import Core, OutOfMemoryError, is_oom, release_memory
from landscape.engine.inputs import EvalData
from landscape.engine.layout import ParamLayout
from landscape.engine.loop import LoopStrategy
from landscape.engine.numerics import PRECISIONS, numerics
from landscape.engine.settings import EngineSettings, Tuning
from landscape.engine.sums import CROSS_ENTROPY, GroupResult, Objective, concat
from landscape.engine.trail import Trail, head, part
from landscape.engine.tuner import Tuner
from landscape.engine.vmap import VmapStrategy
from landscape.errors import UserError
from landscape.progress import progress

Buffers = Sequence[dict[str, torch.Tensor]] | None


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
            or ``bf16`` (bfloat16 autocast) (``landscape.engine.numerics``).
        channels_last: keep 4-D weights and inputs in channels-last memory format (speed only;
            the vmap strategy evaluates in the standard format).
        fold_bn: on the loop strategy, evaluate with every convolution + BN pair fused into one
            layer (``landscape.engine.fold``; checked against the unfused model when built).
        cuda_graphs: on CUDA, replay the loop strategy's BN statistics forward as a CUDA graph.
        matmul_convs: on a CPU, compute thin 1-D convolutions as one matrix product
            (``landscape.engine.thin_conv``; checked against the model when built).
        workers: points of a group the loop strategy evaluates at once, each in a thread of its
            own with its own copy of the model (``landscape.engine.loop``). None: 1 until
            ``tune`` measures it.
        bn_ghosts: on a GPU, fixed BN batches a forward of the loop strategy's BN pass, each
            normalised with its own statistics ("ghost batches", ``landscape.engine.bn_pass``).
            None: 1 until ``tune`` measures it.
        cudnn_benchmark: let cuDNN time its algorithms for each new input shape and thread
            instead of its heuristics (off by default: the engine meets many shapes).
        objective: the per-sample loss and whether accuracy is counted (default: cross-entropy
            and accuracy on class indices; ``landscape.engine.sums.Objective``).

    Example:
        >>> ev = GridEvaluator(model, ParamLayout.of(model), data, bn_policy="recompute")
        >>> ev.tune(weights[:8])                       # optional: measure the fastest settings
        >>> ev.evaluate(weights[:8]).metrics["test"]["loss"]   # (8,) mean cross-entropy
    """

    def __init__(self, model: nn.Module, layout: ParamLayout, data: EvalData, *, bn_policy: str,
                 bn_batch_size: int = 128, batch_size: int = 512, precision: str = "fp32",
                 channels_last: bool = False, fold_bn: bool = True, cuda_graphs: bool = True,
                 workers: int | None = None, matmul_convs: bool = True, bn_ghosts: int | None = None,
                 cudnn_benchmark: bool = False, objective: Objective = CROSS_ENTROPY) -> None:
        if bn_policy == "recompute" and data.bn_inputs is None:
            raise UserError("BN recompute needs train inputs (EvalData.bn_inputs)")
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
        for name, value in (("workers", workers), ("bn_ghosts", bn_ghosts)):
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        self.core = Core.build(model, layout, data, bn_policy=bn_policy, bn_batch_size=bn_batch_size,
                               precision=precision, channels_last=channels_last,
                               cudnn_benchmark=cudnn_benchmark, fold_bn=fold_bn, matmul_convs=matmul_convs,
                               objective=objective)
        self.loop = LoopStrategy(self.core, cuda_graphs=cuda_graphs)
        self.vmap = VmapStrategy(self.core)
        self.settings = EngineSettings(batch_size=batch_size, workers=workers or 1, bn_ghosts=bn_ghosts or 1)
        self.tune_workers, self.tune_ghosts = workers is None, bn_ghosts is None  # else the user's are kept
        self.fixed_workers, self.fixed_ghosts = workers, bn_ghosts  # what a tuning was measured for
        self.backoffs: list[str] = []  # every out-of-memory back-off, in order

    # ------------------------------------------------------------------ evaluating

    def evaluate(self, weights: torch.Tensor, buffers: Buffers = None, *, strategy: str | None = None,
                 max_samples: int | None = None) -> GroupResult:
        """Metrics for K points given as (K, P) weight vectors.

        ``buffers`` (one BN-buffer dict per point) is required unless the policy is recompute.
        ``strategy``: ``loop`` or ``vmap`` (default: the settings'). ``max_samples`` cuts the
        longest pass to its first samples and every other to the same fraction (for timing).
        Out-of-memory back-offs change ``settings`` from now on and are listed in ``backoffs``.
        """
        strategy = strategy or self.settings.strategy
        if strategy not in ("loop", "vmap"):
            raise UserError(f"unknown engine strategy {strategy!r}; expected loop or vmap")
        if not self.core.recompute and self.bn_names and buffers is None:
            raise UserError(f"BN policy {self.core.bn_policy!r} needs per-point buffers")
        trail = Trail(self.settings.but(strategy=strategy))
        try:
            return self.attempt(weights, buffers, trail, max_samples)
        finally:  # what the back-offs learnt holds, even when the group failed or was interrupted
            self.settings = trail.settings.but(strategy=self.settings.strategy)
            self.backoffs += trail.backoffs

    def attempt(self, weights: torch.Tensor, buffers: Buffers, trail: Trail,
                max_samples: int | None = None) -> GroupResult:
        """Evaluate with ``trail.settings``; on out of memory back off (``trail`` records it)
        and retry. Groups larger than the settings' ``max_group`` are cut first."""
        k = trail.settings.max_group
        if k and len(weights) > k:  # an earlier group ran out of memory
            return concat([self.attempt(weights[i : i + k], part(buffers, i, i + k), trail, max_samples)
                           for i in range(0, len(weights), k)])
        with torch.no_grad():
            return self._backing_off(weights, buffers, trail, max_samples)

    def _backing_off(self, weights: torch.Tensor, buffers: Buffers, trail: Trail,
                     max_samples: int | None) -> GroupResult:
        settings = trail.settings
        strategy = self.loop if settings.strategy == "loop" else self.vmap
        try:
            with numerics(self.core.precision, self.core.device, autotune=self.core.cudnn_benchmark):
                return strategy.evaluate(weights, buffers, settings, max_samples)
        except (OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc):
                raise
            step = back_off(settings, len(weights), exc, ghosts_in_use=self.loop.bn.in_use(settings.bn_ghosts),
                            bn_batch_size=self.core.bn_batch_size)
        # Retry only here, after the except block: the exception's traceback holds the failed
        # attempt's frames, and with them every activation it had allocated.
        trail.step(step.settings, step.message)
        if step.drop_ghosts:
            self.loop.bn.drop("out of memory")
        if step.settings.workers < settings.workers:
            self.loop.keep_replicas(step.settings.workers)
        release_memory(self.core.device)
        if not step.split:
            return self._backing_off(weights, buffers, trail, max_samples)
        half = len(weights) // 2
        first = self._backing_off(weights[:half], head(buffers, half), trail, max_samples)
        return concat([first, self._backing_off(weights[half:], part(buffers, half), trail, max_samples)])

    # ------------------------------------------------------------------ choosing settings

    def tune(self, weights: torch.Tensor, buffers: Buffers = None, *, strategy: str = "auto",
             group_sizes: Sequence[int] = ()) -> Tuning:
        """Measure the fastest settings on this group of points (``landscape.engine.tuner``) and
        use them from now on. A progress bar (when switched on) counts the timings."""
        with progress(total=None, desc="tuning the engine", unit=" timings") as bar:
            tuning = Tuner(self, bar).tune(weights, buffers, strategy, group_sizes)
        self.apply(tuning.settings)
        self.backoffs += tuning.backoffs
        return tuning

    def choose_strategy(self, weights: torch.Tensor, buffers: Buffers = None) -> Tuning:
        """Time both strategies (and the loop strategy's worker counts) on this group of
        points; the settings are not changed (``tune`` does)."""
        tuning = Tuner(self).choose_strategy(weights, buffers)
        self.loop.keep_replicas(tuning.settings.at_once(len(weights)))
        return tuning

    def apply(self, settings: EngineSettings) -> None:
        """Run with ``settings`` from now on (the tuner's choice, or a resumed run's)."""
        self.settings = settings
        self.loop.keep_replicas(settings.workers if settings.strategy == "loop" else 1)

    def tuning_key(self) -> dict[str, object]:
        """What a recorded tuning depends on: a resumed run reuses it only when this matches."""
        device = self.core.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        key = {"device": f"{device.type} ({name})", "precision": self.core.precision,
               "channels_last": self.core.channels_last, "bn_batch_size": self.core.bn_batch_size}
        if device.type == "cpu":  # the loop strategy's worker threads share the intra-op threads
            key["threads"] = torch.get_num_threads()
        if self.core.data.streamed:  # absent when resident, as in files of earlier versions
            key["data"] = "host memory"
        key["workers"] = "measured" if self.tune_workers else self.fixed_workers
        if not self.tune_ghosts:  # absent when tuned, as in files of earlier versions
            key["bn_ghosts"] = self.fixed_ghosts
        return key

    # ------------------------------------------------------------------ for the record

    @property
    def model(self) -> nn.Module:
        """The engine's private model."""
        return self.core.model

    @property
    def data(self) -> EvalData:
        return self.core.data

    @property
    def bn_names(self) -> list[str]:
        return [n for n, _ in bn_modules(self.core.model)]

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    @property
    def workers(self) -> int:
        return self.settings.workers

    @property
    def max_group(self) -> int | None:
        return self.settings.max_group

    @property
    def ghosts_in_use(self) -> int:
        """Fixed BN batches a forward that the GPU's BN pass runs with these settings."""
        return self.loop.bn.in_use(self.settings.bn_ghosts)

    @property
    def ghost_note(self) -> str:
        return self.loop.bn.note(self.settings.bn_ghosts)

    @property
    def graph_note(self) -> str:
        """How the BN graphs of the settings' size went ("" until they are captured)."""
        bn = self.loop.bn
        return bn.graph_note if bn.graph_rows == self.ghosts_in_use * self.core.bn_batch_size else ""

    @property
    def folded_layers(self) -> int:
        return 0 if self.core.folded is None else len(self.core.folded.pairs)

    @property
    def matmul_convs(self) -> int:
        return self.core.matmul_convs

    @property
    def data_placement(self) -> str:
        """Where the evaluation data lives, for the record."""
        return "host memory, copied to the device batch by batch" if self.core.data.streamed else "on the device"
