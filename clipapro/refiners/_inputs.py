"""Input normalisation for :func:`clipapro.refiners.refine`: accept what users of pydensecrf hand over
(uint8 (H, W, 3) photos, numpy arrays, probabilities or logits) and turn it into validated tensors.

Every check raises ``TypeError``/``ValueError`` naming the argument and its shape.
"""

from __future__ import annotations

import numpy as np
import torch

#: Probabilities must sum to one along K within this absolute tolerance (float16 inputs round).
SUM_TOLERANCE = 1e-3


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.number)):
            raise TypeError(f"{name} must be a numeric array, got dtype {x.dtype}")
        arr = np.ascontiguousarray(x)
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch wants writable memory
    if isinstance(x, torch.Tensor):
        return x.detach()
    raise TypeError(f"{name} must be a numpy array or torch.Tensor, got {type(x).__name__}")


def image_to_tensor(image) -> torch.Tensor:
    """uint8 (H, W, 3) / (B, H, W, 3), or float (3, H, W) / (B, 3, H, W) in [0, 1] -> float32
    (B, 3, H, W) in [0, 1] on the CPU."""
    t = _as_tensor(image, "image")
    if t.numel() == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        if t.dim() not in (3, 4) or t.shape[-1] != 3:
            raise ValueError(f"uint8 image must have shape (H, W, 3) or (B, H, W, 3), got {tuple(t.shape)}")
        t = t.unsqueeze(0) if t.dim() == 3 else t
        return t.permute(0, 3, 1, 2).to("cpu", torch.float32).div_(255.0).contiguous()
    if not t.is_floating_point():
        raise TypeError(f"image must be uint8 (H, W, 3) or floating point (3, H, W) in [0, 1], got {t.dtype}")
    if t.dim() not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"float image must have shape (3, H, W) or (B, 3, H, W), got {tuple(t.shape)}")
    t = t.unsqueeze(0) if t.dim() == 3 else t
    t = t.to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"image contains NaN or Inf values (shape {tuple(t.shape)})")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"float image must lie in [0, 1] (got range [{lo:.3g}, {hi:.3g}]); pass uint8 for 0..255")
    return t.clamp(0, 1).contiguous()


def probs_to_tensor(probs, *, logits: bool) -> tuple[torch.Tensor, bool]:
    """(K, H, W) or (B, K, H, W) probabilities (or logits) -> float32 (B, K, H, W) probabilities on
    the CPU, and whether the input had no batch dimension."""
    name = "logits" if logits else "probs"
    t = _as_tensor(probs, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if t.dim() not in (3, 4):
        raise ValueError(f"{name} must have shape (K, H, W) or (B, K, H, W), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    squeeze = t.dim() == 3
    t = (t.unsqueeze(0) if squeeze else t).to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values (shape {tuple(t.shape)})")
    if logits:
        return torch.softmax(t, 1).contiguous(), squeeze
    lowest = float(t.min())
    if lowest < -1e-6:
        raise ValueError(f"probs must be non-negative (min {lowest:.3g}); pass logits=True for logits")
    err = float((t.sum(1) - 1).abs().max())
    if err > SUM_TOLERANCE:
        raise ValueError(f"probs must sum to one along K (axis {0 if squeeze else 1}), max deviation {err:.3g}; "
                         "pass logits=True for unnormalised scores")
    if err > 1e-6 or lowest < 0:  # renormalise only what needs it (full passes cost time)
        t = t.clamp_min(0)
        t = t / t.sum(1, keepdim=True)
    return t.contiguous(), squeeze


def check_pair(image: torch.Tensor, probs: torch.Tensor) -> None:
    if image.shape[-2:] != probs.shape[-2:]:
        raise ValueError(f"probs has H x W = {tuple(probs.shape[-2:])} but image has {tuple(image.shape[-2:])}")
    if image.shape[0] != probs.shape[0]:
        raise ValueError(f"probs has batch {probs.shape[0]} but image has batch {image.shape[0]}")
