"""Checkpoints with exact resume: model, optimiser, scheduler, AMP scaler, step and every RNG state.

``OUT/checkpoints/step_<NNNNNNN>.pt`` written atomically by rank 0; RNG states of all ranks are
gathered so each rank gets its own back. The data order needs no state (see
:mod:`clipapro.pseudo.trainset`): it is recomputed from the step.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from clipapro.io import atomic_path

__all__ = ["capture_rng", "latest_checkpoint", "load_checkpoint", "restore_rng", "save_checkpoint"]

_NAME = re.compile(r"^step_(\d+)\.pt$")


def capture_rng() -> dict:
    """This process's RNG states: Python, NumPy, torch CPU and (if used) every CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _gather_rng() -> list:
    mine = capture_rng()
    if dist.is_available() and dist.is_initialized():
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        return everyone
    return [mine]


def save_checkpoint(out_dir, *, step: int, model, optimizer, scheduler, scaler, config: dict,
                    config_hash: str, keep: int = 2, is_main: bool = True) -> Path | None:
    """Write ``OUT/checkpoints/step_<step>.pt`` (all ranks must call: RNG states are gathered) and
    delete all but the newest ``keep`` checkpoints. Returns the path on rank 0."""
    rng = _gather_rng()
    if not is_main:
        return None
    net = model.module if hasattr(model, "module") else model
    state = {
        "step": int(step), "model": net.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng, "config": config, "config_hash": config_hash,
    }
    folder = Path(out_dir) / "checkpoints"
    path = folder / f"step_{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    old = sorted(p for p in folder.iterdir() if _NAME.match(p.name))[:-keep] if keep > 0 else []
    for p in old:
        p.unlink(missing_ok=True)
    return path


def latest_checkpoint(out_dir) -> Path | None:
    """The checkpoint with the highest step in ``OUT/checkpoints``, or None."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    return found[-1][1] if found else None


def load_checkpoint(path, *, model, optimizer, scheduler, scaler, config_hash: str, rank: int = 0,
                    map_location="cpu") -> int:
    """Restore everything saved by :func:`save_checkpoint` into the given objects; return the step.

    Refuses a checkpoint written with a different training configuration (its hash differs).
    """
    state = torch.load(path, map_location=map_location, weights_only=False)
    if state.get("config_hash") != config_hash:
        raise ValueError(f"checkpoint {path} belongs to a different training configuration "
                         f"(hash {str(state.get('config_hash'))[:12]}); saved config: {state.get('config')}; "
                         "use another --out or the same options")
    net = model.module if hasattr(model, "module") else model
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    if len(rngs) > rank:
        restore_rng(rngs[rank])
    return int(state["step"])
