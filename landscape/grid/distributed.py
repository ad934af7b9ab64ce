"""Process groups for work split across processes launched by ``torchrun``.

``init_from_env()`` joins the group that torchrun describes in the environment (gloo on CPU, NCCL
on GPU) and returns this process's place in it; without torchrun it is a group of one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's rank among ``world_size`` processes, and a barrier across them."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        """This rank's items of a list split round-robin across the group."""
        return items[self.rank :: self.world_size]


def init_from_env(device: torch.device | None = None) -> Group:
    """Join torchrun's process group if ``WORLD_SIZE`` > 1, else return a group of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    if not dist.is_initialized():
        if device is not None and device.type == "cuda":
            # collectives build their tensors on the current device: one GPU per process
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(local)
            dist.init_process_group("nccl", device_id=local)
        else:
            dist.init_process_group("gloo")
    return Group(dist.get_rank(), dist.get_world_size(), dist.barrier)


def local_device(device: torch.device, group: Group) -> torch.device:
    """Under torchrun on GPUs, each process takes the GPU of its ``LOCAL_RANK``."""
    if device.type == "cuda" and group.world_size > 1 and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
