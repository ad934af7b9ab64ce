"""The evaluation inputs: resident (or streamed) data, and the slices the tuner times on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EvalData:
    """Evaluation data: ``splits`` maps a split name to (inputs, labels); ``bn_inputs`` are the
    train inputs used for BN recompute (None when not recomputing); ``decode``, when given, turns
    a batch of stored inputs (e.g. uint8 images) into model inputs.

    The tensors are resident on the device the model runs on, unless ``device`` names another
    one: then they stay where they are (host memory, for data that does not fit on the GPU;
    ``landscape.assets.resident.place``) and every batch is copied to ``device`` as it is used."""

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

    @property
    def longest(self) -> int:
        """Samples of the longest pass (a split, or the BN inputs)."""
        return max([len(x) for x, _ in self.splits.values()] +
                   [0 if self.bn_inputs is None else len(self.bn_inputs)])


def timing_slice(data: EvalData, x: torch.Tensor, max_samples: int | None) -> torch.Tensor:
    """The first samples of a pass, for timing: the longest pass (BN inputs or split) is cut to
    ``max_samples`` and every other to the same fraction, so that a timed slice weighs the
    passes as the full evaluation does. All of ``x`` when ``max_samples`` is None."""
    if max_samples is None:
        return x
    return x[: max(2, -(-len(x) * max_samples // data.longest))]


def standard(x: torch.Tensor) -> torch.Tensor:
    """Inputs of the vmap strategy in the standard memory format: inside vmap, CUDA batch norm
    cannot query a channels-last layout (channels-last speeds up the loop strategy only)."""
    return x.contiguous()


def channels_last_data(data: EvalData) -> EvalData:
    """``data`` with its 4-D inputs in channels-last format, each tensor converted once (the
    BN inputs are usually the train inputs themselves)."""
    done: dict[int, torch.Tensor] = {}

    def convert(x: torch.Tensor) -> torch.Tensor:
        if id(x) not in done:
            done[id(x)] = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        return done[id(x)]

    return EvalData({s: (convert(x), y) for s, (x, y) in data.splits.items()},
                    None if data.bn_inputs is None else convert(data.bn_inputs), data.decode, data.device)
