"""Pieces every resumable training loop shares (``train`` and ``train-instances``).

A run folder holds ``config.json``, an append-only ``log.jsonl`` written by rank 0, and
``checkpoints/`` (see :mod:`clipapro.pseudo.checkpoint`). :func:`start_run` either resumes the newest
valid checkpoint (restoring weights, optimiser, scheduler, scaler and RNG states) or seeds a fresh run,
then wraps the model for DDP when the process group is up.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from clipapro.pseudo import checkpoint as ckpt


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (numpy takes ``seed mod 2**32``)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class JsonLog:
    """Append-only JSON-lines log; writes nothing unless ``enabled`` (rank 0 only)."""

    def __init__(self, path: Path, *, enabled: bool):
        self.path, self.enabled = Path(path), enabled

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def start_run(out_dir, *, model, optimizer, scheduler, scaler, config_hash: str, seed: int, info, device,
              resume: bool):
    """Resume from the newest checkpoint in ``out_dir`` or seed a fresh run; return ``(step, net)``.

    ``net`` is ``model`` wrapped in DistributedDataParallel when ``info.distributed`` (a
    :func:`clipapro.distributed.dist_info` result), else ``model`` itself. A fresh run seeds every
    generator with ``seed + info.rank``; a resumed one gets its RNG states from the checkpoint.
    """
    step = None
    if resume:
        step = ckpt.load_latest_checkpoint(out_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                                           scaler=scaler, config_hash=config_hash, rank=info.rank)
    if step is None:
        step = 0
        seed_everything(seed + info.rank)
    net = model
    if info.distributed:
        device = torch.device(device)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return step, net
