"""What both strategies share: the private model, the data, the BN recorder, the tuner's clock,
one split's evaluation, and how out-of-memory errors are recognised and cleaned up after."""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.engine.bn import bn_modules
from landscape.engine.fold import Folded, try_fold
from landscape.engine.inputs import EvalData, channels_last_data, timing_slice
from landscape.engine.layout import ParamLayout
from landscape.engine.numerics import numerics
from landscape.engine.records import Recorder, stats_hook
from landscape.engine.sums import CROSS_ENTROPY, Objective, SplitSums
from landscape.engine.thin_conv import use_matmul_convs
from landscape.errors import UserError

OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class OutOfTime(Exception):
    """A candidate timed by the tuner ran past its time limit (``Clock.check``)."""


class Clock:
    """The tuner's time limit on an evaluation, checked once a batch by every pass."""

    def __init__(self, device: torch.device, rec: Recorder) -> None:
        self.device, self.rec = device, rec
        self.deadline: float | None = None  # while the tuner times a candidate

    def check(self) -> None:
        """Raise ``OutOfTime`` past the deadline. On a GPU the host could queue a whole pass
        ahead of the device, so while a limit is set each call also waits until the device has
        finished the batch before last."""
        if self.deadline is None:
            return
        if self.device.type == "cuda":
            events = self.rec.events  # this thread's
            events.append(torch.cuda.Event())
            events[-1].record(torch.cuda.current_stream(self.device))
            if len(events) > 2:
                events.popleft().synchronize()
        if time.perf_counter() > self.deadline:
            raise OutOfTime

    def stop(self) -> None:
        """No limit from now on (this thread's pace forgotten)."""
        self.deadline = None
        self.rec.events.clear()


@dataclass
class Core:
    """The engine's private model (a copy: the caller's is never modified) with its BN hooks,
    the evaluation data, the recorder the hooks write to, and the settings that never change.
    The strategies read it; only the evaluator front makes one (``Core.build``)."""

    model: nn.Module
    layout: ParamLayout
    data: EvalData
    bn_policy: str
    bn_batch_size: int
    precision: str
    channels_last: bool
    cudnn_benchmark: bool
    rec: Recorder
    clock: Clock
    folded: Folded | None  # the model with conv + BN pairs fused (landscape.engine.fold)
    matmul_convs: int  # thin 1-D convolutions computed as matrix products (landscape.engine.thin_conv)
    objective: Objective = CROSS_ENTROPY  # the loss (and accuracy) a point is scored by

    @classmethod
    def build(cls, model: nn.Module, layout: ParamLayout, data: EvalData, *, bn_policy: str,
              bn_batch_size: int, precision: str, channels_last: bool, cudnn_benchmark: bool,
              fold_bn: bool, matmul_convs: bool, objective: Objective = CROSS_ENTROPY) -> Core:
        """The private model on the data's device, in channels-last format if asked, with thin
        convolutions and BN folding where they hold for it, and the BN hooks."""
        device = data.compute_device
        model = copy.deepcopy(model).to(device).eval().requires_grad_(False)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            data = channels_last_data(data)
        sample = data.batch(next(iter(data.splits.values()))[0][:8])
        with numerics("fp32", device):  # the checks compare exact maths, whatever the precision
            thin = use_matmul_convs(model, sample) if matmul_convs and device.type == "cpu" else 0  # before folding
            folded = try_fold(model, sample) if fold_bn and bn_modules(model) else None
        rec = Recorder()
        for name, m in bn_modules(model):  # copied along into replicas and the vmap stats model
            m.register_forward_pre_hook(stats_hook(name, rec))
        return cls(model, layout, data, bn_policy, bn_batch_size, precision, channels_last,
                   cudnn_benchmark, rec, Clock(device, rec), folded, thin, objective)

    @property
    def device(self) -> torch.device:
        return self.data.compute_device

    @property
    def recompute(self) -> bool:
        """Whether every point's BN statistics are recomputed on the train inputs."""
        return self.bn_policy == "recompute"

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of stored inputs ready for the model (``EvalData.batch``), checked against
        the tuner's time limit."""
        self.clock.check()
        return self.data.batch(x)

    def bn_inputs(self, max_samples: int | None) -> torch.Tensor:
        """The train inputs of the BN pass (cut for timing)."""
        return timing_slice(self.data, self.data.bn_inputs, max_samples)

    def eval_split(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   *, batch_size: int, max_samples: int | None, k: int = 1) -> dict[str, np.ndarray]:
        """Mean loss (and accuracy in %) of ``k`` points over the split, by name; ``fn`` gives
        outputs (B, ...) for one point or (K, B, ...) for K."""
        sums = SplitSums(k, self.device, self.objective)
        x = timing_slice(self.data, x, max_samples)
        for xb, yb in _batches(x, y[: len(x)], batch_size):
            xb, yb = self.batch(xb), self.data.move(yb)
            sums.add(fn(xb).float().reshape(k, len(yb), -1), yb)  # (K, B, C)
        if sums.n == 0:
            raise UserError("cannot evaluate on an empty split")
        return sums.means()


def _batches(x: torch.Tensor, y: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(x), size):
        yield x[start : start + size], y[start : start + size]


def is_oom(exc: BaseException) -> bool:
    """Out of memory, as PyTorch, cuDNN and cuBLAS word it."""
    text = str(exc).lower()
    return isinstance(exc, OutOfMemoryError) or any(
        s in text for s in ("out of memory", "can't allocate memory", "cudnn_status_alloc_failed",
                            "cublas_status_alloc_failed"))


def release_memory(device: torch.device) -> None:
    """Free what a failed attempt held. A worker thread's exception sits in a reference cycle
    (its future, its traceback, the frame that holds the futures), which only the cycle collector
    breaks; then the freed GPU blocks go back to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
