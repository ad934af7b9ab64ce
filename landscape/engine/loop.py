"""The loop strategy: each point's weights loaded into a private model in turn, the batch of
data staying resident. With several workers, several points run at once, each in a thread of
its own with its own replica of the model: on a CPU the threads share the intra-op threads
(small models keep two cores busier this way), on a GPU each queues its work on a CUDA stream
of its own, so that the small kernels of several points run side by side."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np
import torch

from landscape.engine.backoff import in_bn_pass, mark_bn_pass, marking_the_bn_pass
from landscape.engine.bn_pass import LoopBnPass
from landscape.engine.core import Core, OutOfTime, release_memory
from landscape.engine.numerics import numerics
from landscape.engine.replica import Replica
from landscape.engine.settings import EngineSettings
from landscape.engine.sums import GroupResult

Buffers = Sequence[dict[str, torch.Tensor]] | None


class LoopStrategy:
    """Evaluates groups of points one model load at a time, on ``settings.workers`` workers."""

    def __init__(self, core: Core, *, cuda_graphs: bool) -> None:
        self.core = core
        self.replicas = [Replica.of(core.model, core.folded)]  # the first is the core's model
        self.bn = LoopBnPass(core, self.replicas, cuda_graphs=cuda_graphs)
        self.threads: tuple[ThreadPoolExecutor, int] | None = None  # GPU workers' threads, size

    def evaluate(self, weights: torch.Tensor, buffers: Buffers, settings: EngineSettings,
                 max_samples: int | None) -> GroupResult:
        """Metrics of the (K, P) points ``weights`` (BN ``buffers`` per point unless recomputed)."""
        core, k = self.core, len(weights)
        out = {s: {m: np.empty(k) for m in core.objective.metrics} for s in core.data.splits}

        def point(i: int, replica: Replica) -> None:
            replica.load(core.layout, weights[i], None if buffers is None else buffers[i], core.device)
            if core.recompute and self.bn.has_layers:
                with marking_the_bn_pass():
                    self.bn.run_(replica, max_samples, settings.bn_ghosts)
            model = replica.evaluation_model()
            for split, (x, y) in core.data.splits.items():
                values = core.eval_split(model, x, y, batch_size=settings.batch_size, max_samples=max_samples)
                for name, v in values.items():
                    out[split][name][i] = v[0]

        workers = min(settings.workers, k)
        if workers == 1:
            for i in range(k):
                point(i, self.replicas[0])
        else:
            self._in_threads(point, k, workers, settings.bn_ghosts)
        return GroupResult(out)

    def keep_replicas(self, n: int) -> None:
        """Drop the replicas (with their CUDA graphs) beyond the first ``n``: the tuner makes
        as many as its largest candidate needs."""
        if len(self.replicas) > n:
            del self.replicas[max(1, n) :]
            release_memory(self.core.device)

    def replica(self, j: int) -> Replica:
        """Worker ``j``'s replica (made when first needed, with its CUDA stream on a GPU)."""
        while len(self.replicas) <= j:
            self.replicas.append(Replica.copy_of(self.replicas[0]))
        replica = self.replicas[j]
        if replica.stream is None and self.core.device.type == "cuda":
            replica.stream = torch.cuda.Stream(self.core.device)
        return replica

    def _in_threads(self, point: Callable[[int, Replica], None], k: int, workers: int, ghosts: int) -> None:
        """Points 0..k-1 on ``workers`` threads, each with its own replica of the model and its
        share of the device (``_shared_out``). After a failure or an interrupt the other threads
        stop at their next point."""
        core = self.core
        replicas = [self.replica(j) for j in range(workers)]
        self.bn.capture_graphs(replicas, ghosts)
        stop = threading.Event()

        def work(j: int) -> None:
            replica = replicas[j]
            with torch.no_grad(), numerics(core.precision, core.device, autotune=core.cudnn_benchmark), \
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
                error = next((e for e in errors if not isinstance(e, OutOfTime)), errors[0])
                if any(in_bn_pass(e) for e in errors):  # for the back-off: any worker's BN pass
                    mark_bn_pass(error)
                raise error

    @contextlib.contextmanager
    def _pool(self, workers: int):
        """Threads for ``workers`` workers. On a CPU new ones each time: a new thread takes the
        intra-op thread count set just before. On a GPU the same ones for the evaluator's life:
        cuDNN keeps its tuned convolution plans per thread, so new threads would tune again."""
        if self.core.device.type != "cuda":
            with ThreadPoolExecutor(workers, thread_name_prefix="landscape-point") as pool:
                yield pool
            return
        if self.threads is None or self.threads[1] < workers:
            if self.threads is not None:
                self.threads[0].shutdown()
            size = max(workers, 8)
            self.threads = ThreadPoolExecutor(size, thread_name_prefix="landscape-point"), size
        yield self.threads[0]

    @contextlib.contextmanager
    def _shared_out(self, replicas: list[Replica]):
        """The device shared out between the workers of ``replicas``. On a CPU: an equal share
        of the intra-op threads each (new threads take the process's setting; restored
        afterwards). On a GPU: a stream each, ordered after the work queued before and before
        the work queued after."""
        if self.core.device.type != "cuda":
            threads = torch.get_num_threads()
            torch.set_num_threads(max(1, threads // len(replicas)))
            try:
                yield
            finally:
                torch.set_num_threads(threads)
            return
        current = torch.cuda.current_stream(self.core.device)
        for r in replicas:
            r.stream.wait_stream(current)
        try:
            yield
        finally:
            for r in replicas:
                current.wait_stream(r.stream)


def _on(stream) -> contextlib.AbstractContextManager:
    """Queue this thread's GPU work on ``stream``, with the stream's device current (a new
    thread starts on device 0); nothing to do without a stream."""
    stack = contextlib.ExitStack()
    if stream is not None:
        stack.enter_context(torch.cuda.device(stream.device))
        stack.enter_context(torch.cuda.stream(stream))
    return stack
