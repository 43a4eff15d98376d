"""Multi-process training (``torchrun``): process group from the environment, rank helpers.

``torchrun --nproc_per_node=N -m ccreid train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`setup`
reads them, joins the process group (NCCL on CUDA, gloo on CPU) and gives each process
its device (``cuda:LOCAL_RANK`` on CUDA). Without ``WORLD_SIZE > 1`` everything here is a
no-op, so the single-process path is unchanged. A group the caller initialised already
(tests, notebooks) is used as is and left open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from ccreid.errors import CCReIDError
from ccreid.runtime.device import resolve_device

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: a plain single process)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we initialised the group, so we destroy it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (e.g. while rank 0 writes files)."""
        if self.enabled:
            dist.barrier()

    def all_gather_object(self, obj: Any) -> List[Any]:
        """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
        if not self.enabled:
            return [obj]
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics differ per rank)."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def reduce_terms(self, terms: Dict[str, float], summed: Tuple[str, ...]) -> Dict[str, float]:
        """Mean over ranks of each value, except the keys in ``summed`` (totals, kept ints)."""
        if not self.enabled:
            return terms
        keys = list(terms)  # the same order on every rank: the same code made them
        values = torch.tensor([float(terms[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return {k: (int(v) if k in summed else v / self.world_size) for k, v in zip(keys, values.tolist())}

    def close(self) -> None:
        """Destroy the process group if :func:`setup` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise CCReIDError(f"torchrun environment: {name}={value!r} is not an integer")


def _torchrun_env() -> Tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the environment, checked for consistency."""
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if world is None:
        if rank not in (None, 0):
            raise CCReIDError(f"torchrun environment: RANK={rank} is set but WORLD_SIZE is not (launch with torchrun)")
        return 0, 1, local or 0
    if world < 1:
        raise CCReIDError(f"torchrun environment: WORLD_SIZE={world} must be >= 1")
    if world > 1:
        missing = [name for name in TORCHRUN_VARS if name not in os.environ]
        if missing:
            raise CCReIDError(f"torchrun environment: WORLD_SIZE={world} but {', '.join(missing)} unset "
                              "(launch with torchrun)")
    rank, local = rank or 0, local or 0
    if not 0 <= rank < world:
        raise CCReIDError(f"torchrun environment: RANK={rank} outside 0..{world - 1} (WORLD_SIZE={world})")
    if local < 0 or local > rank:
        raise CCReIDError(f"torchrun environment: LOCAL_RANK={local} inconsistent with RANK={rank}")
    return rank, world, local


def _rank_device(name: str, local_rank: int, distributed: bool, option: str) -> torch.device:
    """The device ``option`` names, resolved for this process: ``cuda:LOCAL_RANK`` on CUDA under torchrun."""
    device = resolve_device(name, option)
    if not distributed or device.type == "cpu":
        return device
    where = f"option {option}" if option.startswith("-") else f"config key '{option}'"
    if device.type != "cuda":
        raise CCReIDError(f"{where}: {device.type} does not support multi-process work (use cuda or cpu)")
    if ":" in name:
        raise CCReIDError(f"{where}: {name} under torchrun; use cuda or auto (each process takes cuda:LOCAL_RANK)")
    if local_rank >= torch.cuda.device_count():
        raise CCReIDError(f"torchrun environment: LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} "
                          f"CUDA GPUs are visible (lower --nproc_per_node)")
    return torch.device("cuda", local_rank)


def setup(device_name: str, sync_bn: bool = False, option: str = "train.device") -> DistInfo:
    """Join the job torchrun started (if any) and pick this process's device (``option``: the config
    key or command-line option that named it, for errors).

    ``sync_bn`` is checked here: SyncBatchNorm needs CUDA when there are several processes.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world, local = dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK")
        local = dist.get_rank() if local is None else local
        owns = False
    else:
        rank, world, local = _torchrun_env()
        owns = world > 1
    device = _rank_device(device_name, local, world > 1, option)
    if world > 1 and sync_bn and device.type != "cuda":
        raise CCReIDError(f"config key 'train.sync_bn': SyncBatchNorm needs CUDA, not {device.type} "
                          "(set train.sync_bn=false)")
    if owns:
        if not dist.is_available():
            raise CCReIDError("torchrun environment: this PyTorch build has no torch.distributed")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world, device, owns)


def gather_rows(rows: torch.Tensor, total: int, info: DistInfo) -> torch.Tensor:
    """Reassemble a tensor sharded as ``items[rank::world_size]`` (padded to equal shares), on CPU."""
    if not info.enabled:
        return rows.cpu()
    shards = [torch.empty_like(rows, device=info.device) for _ in range(info.world_size)]
    dist.all_gather(shards, rows.to(info.device))
    return torch.stack(shards, 1).flatten(0, 1)[:total].cpu()


def current() -> DistInfo:
    """The job this process belongs to (a single process when no group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return DistInfo(dist.get_rank(), dist.get_world_size(), device)
