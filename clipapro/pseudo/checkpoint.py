"""Checkpoints with exact resume: model, optimiser, scheduler, AMP scaler, step and every RNG state.

``OUT/checkpoints/step_<NNNNNNN>.pt`` written atomically (fsynced, then renamed) by rank 0; RNG states
of all ranks are gathered so each rank gets its own back. The data order needs no state (see
:mod:`clipapro.pseudo.trainset`): it is recomputed from the step.

Checkpoints hold tensors, numbers, strings, lists and dicts only, and are loaded with
``torch.load(..., weights_only=True)``: a planted pickle cannot run code, it fails to load. When the
newest checkpoint cannot be read (truncated by a crash, corrupt), the previous one is used, with a
warning naming both.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from clipapro.io import atomic_path

__all__ = ["capture_rng", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "load_latest_checkpoint",
           "read_checkpoint", "restore_rng", "save_checkpoint"]

_NAME = re.compile(r"^step_(\d+)\.pt$")


def capture_rng() -> dict:
    """This process's RNG states (Python, NumPy, torch CPU and every CUDA device in use) as tensors,
    numbers and strings only, so that checkpoints load with ``weights_only=True``."""
    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"key": str(key), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    np.random.set_state((npy["key"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
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
    for old in list_checkpoints(out_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(out_dir) -> list[Path]:
    """The checkpoints in ``OUT/checkpoints``, oldest first."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)))
    return [p for _, p in found]


def latest_checkpoint(out_dir) -> Path | None:
    """The checkpoint with the highest step in ``OUT/checkpoints``, or None."""
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def read_checkpoint(path, *, map_location="cpu") -> dict:
    """``torch.load`` with ``weights_only=True``; any failure is one ValueError naming the file."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, corrupt, or a pickle that needs arbitrary code: never run it
        reason = " ".join(str(err).split())
        if "weights_only" in reason or "Unsupported global" in reason:
            reason = "it holds pickled Python objects, which clipapro never loads"
        raise ValueError(f"cannot read checkpoint {path}: {reason[:300]}") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise ValueError(f"cannot read checkpoint {path}: not a clipapro training checkpoint")
    return state


def load_checkpoint(path, *, model, optimizer, scheduler, scaler, config_hash: str, rank: int = 0,
                    map_location="cpu", state: dict | None = None) -> int:
    """Restore everything saved by :func:`save_checkpoint` into the given objects; return the step.

    Refuses a checkpoint written with a different training configuration (its hash differs).
    """
    state = read_checkpoint(path, map_location=map_location) if state is None else state
    if state.get("config_hash") != config_hash:
        raise ValueError(f"checkpoint {path} belongs to a different training configuration "
                         f"(hash {str(state.get('config_hash'))[:12]}); saved config: {state.get('config')}; "
                         "use another --out-dir or the same options")
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


def load_latest_checkpoint(out_dir, **objects) -> int | None:
    """Resume from the newest readable checkpoint in ``out_dir`` (see :func:`load_checkpoint` for
    ``objects``); an unreadable newer one is skipped with a warning naming it and the one used.
    Returns the step, or None when there is no checkpoint. A configuration mismatch still raises."""
    found = list_checkpoints(out_dir)
    failed: list[tuple[Path, str]] = []
    for path in reversed(found):
        try:
            state = read_checkpoint(path, map_location=objects.get("map_location", "cpu"))
        except ValueError as err:
            failed.append((path, str(err)))
            continue
        for bad, why in failed:
            warnings.warn(f"{why}; resuming from the previous checkpoint {path} instead of {bad}", stacklevel=2)
        return load_checkpoint(path, state=state, **objects)
    if failed:
        raise ValueError(f"no readable checkpoint in {Path(out_dir) / 'checkpoints'}: "
                         + "; ".join(why for _, why in failed) + " (remove them or use another --out-dir)")
    return None
