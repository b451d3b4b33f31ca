"""DistributedDataParallel plumbing for ``torchrun``: who am I, which device, and gathering results.

Without torchrun (no ``WORLD_SIZE`` in the environment) everything degrades to one process, so the
training loop has a single code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device: str = "auto") -> tuple[World, torch.device]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU) and pick this rank's device.

    Args:
        device: "auto" (CUDA if available), "cpu" or "cuda".
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = World(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        size=int(os.environ.get("WORLD_SIZE", 1)),
    )
    target = torch.device("cuda", world.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=target if use_cuda else None)
    return world, target


def teardown() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every rank (no-op for one process)."""
    if world.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over ranks, in place, and return it."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_rows(rows: np.ndarray, values: np.ndarray, total: int, world: World) -> np.ndarray:
    """Reassemble per-rank results: each rank holds ``values[j]`` for dataset row ``rows[j]``.

    Returns the (total, ...) array on every rank, rows in dataset order.
    """
    parts = [(rows, values)]
    if world.distributed:
        parts = [None] * world.size
        dist.all_gather_object(parts, (rows, values))
    result = np.empty((total, *values.shape[1:]), dtype=values.dtype)
    seen = np.zeros(total, dtype=bool)
    for part_rows, part_values in parts:
        result[part_rows] = part_values
        seen[part_rows] = True
    if not seen.all():
        raise RuntimeError(f"gathered {int(seen.sum())} of {total} rows; a rank lost its share.")
    return result


def broadcast_object(obj: object, world: World) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
