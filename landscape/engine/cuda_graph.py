"""One step of work captured as a CUDA graph and replayed on new inputs of the same shape.

The engine's BN statistics pass runs a small forward per fixed batch of 128 samples: on a GPU,
launching its hundred-odd kernels from Python takes longer than running them. A graph launches
them all at once. ``GraphedStep`` captures ``step(x)`` for one input shape; calling it copies the
new input into the captured one and replays. Whatever ``step`` writes into tensors that existed
before the capture (accumulators) is written again on every replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class GraphedStep:
    """``step`` captured for inputs like ``example`` (warmed up twice on a side stream first,
    as CUDA graphs require); ``__call__(x)`` replays it on ``x``."""

    def __init__(self, step: Callable[[torch.Tensor], None], example: torch.Tensor) -> None:
        device = example.device
        self.x = example.clone()
        with torch.cuda.device(device):  # the capture stream must be on the data's device
            side = torch.cuda.Stream(device=device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):  # kernels chosen and memory allocated before the capture
                    step(self.x)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=side):
                step(self.x)

    def __call__(self, x: torch.Tensor) -> None:
        self.x.copy_(x, non_blocking=True)  # from host memory too (streamed data)
        self.graph.replay()
