"""Rank/world helpers for ``torchrun``: one code path for a single process and for many.

``torchrun --nproc_per_node=G ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous
variables); without them everything runs as rank 0 of 1 and no process group is created.
The backend is NCCL when the process drives a CUDA device and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo", "StopSignal", "all_reduce_sum", "barrier", "broadcast_object", "cleanup_distributed", "dist_info",
    "init_distributed", "is_main_process", "resolve_device", "shard_indices", "this_shard",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Read rank and world size from an initialised process group, else from torchrun's env vars."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, world, int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """``"auto"``: ``cuda:<local_rank>`` if CUDA is available, else CPU; ``"cuda"`` gets the local rank."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: torch.device) -> DistInfo:
    """Create the default process group when launched by torchrun with WORLD_SIZE > 1 (idempotent).

    NCCL for CUDA devices, gloo otherwise. Returns the :class:`DistInfo` of this process.

    Example:
        >>> info = init_distributed(torch.device("cpu"))   # single process: no group is created
        >>> (info.rank, info.world_size)
        (0, 1)
    """
    info = dist_info()
    if info.distributed and not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        info = dist_info()
    return info


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for all ranks (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (identity in a single process); returns the summed tensor.

    NCCL reduces CUDA tensors only: a CPU tensor under NCCL travels to this rank's GPU and back (the
    result is then written back into ``tensor``).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        tensor.copy_(on_gpu.to(tensor.device))
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (identity in a single process)."""
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The indices of ``range(n)`` that ``rank`` handles: a strided slice, so shards are disjoint,
    their union is everything, and sizes differ by at most one.

    Example:
        >>> shard_indices(5, 1, 2)
        [1, 3]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got rank={rank}, world_size={world_size}")
    return list(range(rank, n, world_size))


def this_shard(n: int, shard: tuple[int, int] | None = None) -> list[int]:
    """:func:`shard_indices` of this process in the initialised process group (all of ``range(n)``
    without one, so results are never partial); ``shard=(rank, world_size)`` overrides it."""
    if shard is None:
        on = dist.is_available() and dist.is_initialized()
        shard = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
    if not (isinstance(shard, (tuple, list)) and len(shard) == 2):
        raise ValueError(f"shard must be (rank, world_size), got {shard!r}")
    return shard_indices(n, int(shard[0]), int(shard[1]))


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return dist_info().is_main


class StopSignal:
    """Turns SIGTERM / SIGUSR1 (cluster preemption; torchrun forwards SIGTERM to its workers) into a
    flag that the training loop polls between steps, so it can checkpoint and exit cleanly.

    :meth:`any_rank` agrees across ranks (max over ranks), so every rank stops after the same step.
    Handlers are installed only in the main thread and restored by :meth:`restore`.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self):
        import signal
        import threading

        self.raised = False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.raised = True

    def any_rank(self, device) -> bool:
        flag = torch.tensor([1.0 if self.raised else 0.0], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def restore(self) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
