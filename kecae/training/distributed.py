"""PyTorch DDP set-up for `torchrun`: nothing here launches processes.

``torchrun --nproc-per-node=P -m kecae train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; a plain
``kecae train`` runs as a world of one. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from kecae.device import check_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (selects the GPU)

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and samples."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    name = check_device(device_name)  # a missing GPU is an error, never a silent CPU run
    if name == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device(name)
        if device.type == "cuda":
            torch.cuda.set_device(device)
    info = DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python float over all ranks (for logging)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank if it is true on any rank (e.g. a NaN seen by one rank stops all)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def wrap_ddp(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """``model`` as this process should call it: itself alone, DDP in a world of several.

    On GPUs BatchNorm becomes SyncBatchNorm so it normalises over the global batch, as one
    process would (SyncBatchNorm is GPU-only; on CPU each rank normalises over its own share).
    The conversion swaps BatchNorm children in place and keeps their parameters, so optimisers
    built on ``model`` stay valid and ``model.state_dict()`` keeps its keys.
    """
    if not info.enabled:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model)
