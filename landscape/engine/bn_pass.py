"""The loop strategy's BN statistics pass: a replica's running statistics recomputed in place.

On a CPU this is ``recompute_bn_`` (BN's own cumulative average, the fastest there). On a GPU
that average would read ``num_batches_tracked`` back to the host in every layer on every batch,
stalling the queue dozens of times a batch, so the same averages are summed on the device
instead (``device_sums``): hooks record each fixed batch's moments (``landscape.engine.records``),
the forward of one batch is replayed as a CUDA graph (``landscape.engine.cuda_graph``), and
several fixed batches can run in one forward, each normalised with its own statistics ("ghost
batches", checked once against one batch at a time). Every way gives the same numbers to float
rounding.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch

from landscape.engine.bn import recompute_bn_
from landscape.engine.core import Core, OutOfMemoryError, is_oom, release_memory
from landscape.engine.cuda_graph import GraphedStep
from landscape.engine.records import ghost_bn
from landscape.engine.replica import Replica
from landscape.engine.sums import bn_buffers, bn_pieces

Sums = dict[str, tuple[torch.Tensor, torch.Tensor]]


class LoopBnPass:
    """BN recompute for the loop strategy's replicas, with the GPU's ghost batches and graphs.

    The number of fixed batches a forward comes with every call (``EngineSettings.bn_ghosts``);
    whether that many hold for the model is a fact checked once per number (``check``), and
    ``in_use(k)`` says what runs when k are asked for.
    """

    def __init__(self, core: Core, replicas: list[Replica], *, cuda_graphs: bool) -> None:
        self.core, self.replicas = core, replicas  # the loop strategy's list, shared
        self.device_sums = core.device.type == "cuda"  # how BN statistics are gathered
        self.cuda_graphs = cuda_graphs
        self.checks: dict[int, tuple[bool, str]] = {}  # k -> (whether k hold, the note)
        self.dropped = ""  # why ghost batches stopped after running out of memory
        self.refused = ""  # why the last count checked did not hold
        self.graph_note = ""  # how the BN graphs of `graph_rows` rows went
        self.graph_rows = 0
        self.has_layers = bool(replicas[0].bn_layers)

    # ------------------------------------------------------------------ ghost batches

    def in_use(self, k: int) -> int:
        """Fixed BN batches a forward when ``k`` are asked for: k where the GPU's BN pass runs
        and k hold for this model (or are not checked yet), else 1."""
        runs = self.device_sums and self.core.recompute and self.has_layers
        return k if runs and self.checks.get(k, (True, ""))[0] else 1

    def note(self, k: int) -> str:
        """Why k ghost batches are used or not, for the record."""
        if k == 1 and (self.dropped or self.refused):
            return self.dropped or self.refused
        if k in self.checks:
            return self.checks[k][1]
        return "not used: the GPU's BN pass only" if k > 1 and not self.device_sums else ""

    def drop(self, why: str) -> None:
        """Ghost batches ran out of memory: the settings go back to one batch a forward, and the
        graphs captured for several batches go before the memory is released."""
        self.dropped = f"not used: {why}"
        for replica in self.replicas:
            replica.graph, replica.graph_rows = None, 0
        self.graph_note, self.graph_rows = "", 0

    def check(self, k: int) -> None:
        """Once per k, before any BN graph is captured for it (only the GPU's BN pass gets
        here): whether k ghost batches give this model the statistics of one batch at a time
        (not so for a model whose BN layers see rows of several inputs at once). Compared on
        the first fixed batches of the BN inputs."""
        if k in self.checks:
            return
        inputs, b = self.core.data.bn_inputs, self.core.bn_batch_size
        n = min(k, 0 if inputs is None else len(inputs) // b)
        why = ("" if k == 1 else "not used: off under bf16" if self.core.precision == "bf16"
               else "not used: fewer than 2 fixed BN batches" if n < 2 or not self.has_layers else None)
        if why is not None:
            self.checks[k] = (False, why)
            return
        agree = None
        try:
            agree = self._ghosts_agree(n)
        except (OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc):
                raise
        if agree is None:
            release_memory(self.core.device)  # after the except block: its traceback held the tensors
        self.checks[k] = (bool(agree), f"{k} fixed batches a forward" if agree else
                          "not used: out of memory while checked" if agree is None else
                          "not used: its BN statistics differ from one batch at a time")
        if not agree:
            self.refused = self.checks[k][1]

    def _ghosts_agree(self, k: int) -> bool:
        """Whether k fixed batches in one forward record what they record one at a time."""
        replica, b = self.replicas[0], self.core.bn_batch_size
        acc, step, sums = self._accumulators(replica), self._step(replica), []
        for ghosts in (1, k):
            _zero(acc)
            with self.batch_stats(replica, ghosts):
                for xb in bn_pieces(self.core.data.bn_inputs[: k * b], b, ghosts * b):
                    step(xb)
            sums.append([t.clone() for pair in acc.values() for t in pair])
        return all(torch.allclose(a, c, rtol=1e-4, atol=1e-6) for a, c in zip(*sums))

    # ------------------------------------------------------------------ the pass

    def run_(self, replica: Replica, max_samples: int | None, ghosts: int = 1) -> None:
        """Recompute the replica's BN statistics in place, over the fixed batches, with
        ``ghosts`` of them a forward where that holds."""
        inputs = self.core.bn_inputs(max_samples)
        if not self.device_sums:
            recompute_bn_(replica.model, inputs, batch_size=self.core.bn_batch_size, transform=self.core.batch)
            return
        self.check(ghosts)
        g = self.in_use(ghosts)
        with self.batch_stats(replica, g):
            acc, calls = self._sums(replica, inputs, g)
        for _, m in replica.bn_layers:
            m.reset_running_stats()  # a layer the forward never used keeps reset statistics
        for name, t in bn_buffers([n for n, _ in replica.bn_layers], acc, calls).items():
            replica.buffers[name].copy_(t)

    @contextlib.contextmanager
    def batch_stats(self, replica: Replica, ghosts: int):
        """The replica's BN layers normalise with batch statistics and update nothing, while
        this thread records their inputs; with ``ghosts`` > 1 they take that many fixed
        batches at once (``ghost_bn``)."""
        rec = self.core.rec
        for name, m in replica.bn_layers:
            m.train()
            m.track_running_stats = False
            if ghosts > 1:  # an instance attribute: this replica's layers only
                m.forward = functools.partial(ghost_bn, m, name, rec, self.core.bn_batch_size)
        rec.on, rec.ghosts = True, ghosts > 1
        try:
            yield
        finally:
            rec.on = rec.ghosts = False
            for _, m in replica.bn_layers:
                m.__dict__.pop("forward", None)
                m.track_running_stats = True
                m.eval()

    def _sums(self, replica: Replica, inputs: torch.Tensor, ghosts: int) -> tuple[Sums, dict[str, int]]:
        """Each BN layer's sums of batch means and variances over the fixed batches, and how
        often it ran. Full pieces of ``ghosts`` batches go through the CUDA graph when there
        is one."""
        acc, step = self._accumulators(replica), self._step(replica)
        calls: dict[str, int] = {}
        chunk = ghosts * self.core.bn_batch_size  # rows a forward, and of the graph's input
        graph = self._graph(replica, inputs[:chunk]) if len(inputs) >= chunk else None
        _zero(acc)
        for xb in bn_pieces(inputs, self.core.bn_batch_size, chunk):
            self.core.clock.check()
            if graph is not None and len(xb) == chunk:
                graph(xb)
                counts = replica.graph_calls
            else:
                step(xb)
                counts = self.core.rec.calls
            for name, c in counts.items():
                calls[name] = calls.get(name, 0) + c
        return acc, calls

    def _accumulators(self, replica: Replica) -> Sums:
        if replica.acc is None:
            device = self.core.device
            replica.acc = {name: (torch.zeros(m.num_features, device=device),
                                  torch.zeros(m.num_features, device=device))
                           for name, m in replica.bn_layers}
        return replica.acc

    def _step(self, replica: Replica) -> Callable[[torch.Tensor], None]:
        """One fixed batch of the BN pass: a forward of the replica whose BN inputs the hooks
        record, added to the replica's accumulators."""
        acc, rec = self._accumulators(replica), self.core.rec  # rec's fields are the calling thread's

        def step(xb: torch.Tensor) -> None:
            rec.clear()
            replica.model(self.core.data.batch(xb))
            for name, (mean, var) in rec.records.items():
                acc[name][0].add_(mean)
                acc[name][1].add_(var)

        return step

    # ------------------------------------------------------------------ CUDA graphs

    def capture_graphs(self, replicas: list[Replica], ghosts: int) -> None:
        """Capture the replicas' BN graphs one after the other on this thread, before their
        workers start: a capture must not overlap other threads' work on the GPU."""
        inputs = self.core.data.bn_inputs
        if not self.core.recompute or not self.device_sums or inputs is None:
            return
        self.check(ghosts)  # decides the graphs' input size
        g = self.in_use(ghosts)
        chunk = g * self.core.bn_batch_size
        if self.has_layers and len(inputs) >= chunk:
            for replica in replicas:
                with self.batch_stats(replica, g):
                    self._graph(replica, inputs[:chunk])

    def _graph(self, replica: Replica, example: torch.Tensor) -> GraphedStep | None:
        """The replica's BN step as a CUDA graph, captured once for inputs of this many rows
        and checked against the eager step on one batch (None off CUDA, under bf16 autocast, or
        when capture or check fails: then every batch runs eagerly, with the same numbers)."""
        if not (self.cuda_graphs and self.core.device.type == "cuda" and self.core.precision != "bf16"):
            return None
        if replica.graph_rows != len(example):  # captured for another number of ghost batches
            replica.graph, replica.graph_rows = None, len(example)
        if self.graph_rows != len(example):  # the note speaks of the graphs of this size
            self.graph_note, self.graph_rows = "", len(example)
        if replica.graph is None:
            step, example = self._step(replica), self.core.data.move(example)  # the graph's input lives on the GPU
            try:
                graph = GraphedStep(step, example)
                replica.graph_calls = dict(self.core.rec.calls)  # what one forward records
                replica.graph = graph if _same_sums(graph, step, example, replica.acc) else False
                if not replica.graph:
                    self.graph_note = "not used: its BN sums differ from the eager step's"
            except RuntimeError as exc:  # out of memory too: the eager step needs less
                replica.graph = False
                self.graph_note = f"not used: {str(exc).splitlines()[0][:160]}"
            self.graph_note = self.graph_note or "used"  # a replica's failure stays visible
        return replica.graph or None


def _zero(acc: Sums) -> None:
    for pair in acc.values():
        for t in pair:
            t.zero_()


def _same_sums(graph: GraphedStep, step, x: torch.Tensor, acc: Sums) -> bool:
    """Whether one replay of ``graph`` adds what one eager ``step`` adds to ``acc``."""
    results = []
    for run in (graph, step):
        _zero(acc)
        run(x)
        results.append([t.clone() for pair in acc.values() for t in pair])
    return all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(*results))
