"""Running the same training under ``torchrun`` (DistributedDataParallel) or as one plain process.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``); with
``WORLD_SIZE > 1`` :func:`setup_distributed` joins the process group (NCCL on CUDA, gloo on CPU) and puts each
process on its GPU ``cuda:LOCAL_RANK``.  Without these variables everything degrades to one process and
the collective helpers are no-ops, so the training code has a single path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(f"invalid rank {self.rank} / world size {self.world_size} / local rank "
                             f"{self.local_rank}")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the only process that writes files."""
        return self.rank == 0

    @staticmethod
    def from_env(environ: Mapping[str, str] | None = None) -> DistInfo:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (torchrun, SLURM wrappers); absent → one process."""
        env = os.environ if environ is None else environ
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
        return DistInfo(rank, world, local)


def setup_distributed(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group when ``info`` is distributed; returns the device this process should use
    (``cuda:LOCAL_RANK`` when ``device`` is CUDA)."""
    if device.type == "cuda":
        if info.distributed and device.index is None:
            device = torch.device("cuda", info.local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
    if info.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return device


def teardown_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.distributed:
        dist.barrier()


def mean_across(values: dict[str, Tensor], info: DistInfo) -> dict[str, float]:
    """Average scalar tensors over the processes (for logging); one process returns them as floats."""
    if not values:
        return {}
    names = sorted(values)
    stacked = torch.stack([values[n].detach().float().reshape(()) for n in names])
    if info.distributed:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked = stacked / info.world_size
    return {n: float(v) for n, v in zip(names, stacked.cpu(), strict=True)}


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's value of ``flag`` on every process."""
    if not info.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item() > 0.5)
