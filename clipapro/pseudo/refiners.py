"""Refiners: turn coarse class probabilities into sharper ones, guided by the image.

One plain-dict registry. A refiner is ``fn(probs, image) -> probs`` with probs (B, K, H, W) float32
and image (B, 3, H, W) RGB float32 in [0, 1], both on CPU (the propagation core is CPU code).

* ``none``: identity.
* ``apro``: :func:`clipapro.apro` (parallel GP + LP, defaults in ``APRO_DEFAULTS``).
* ``auto``: the project's default refiner :func:`clipapro.refine` (``method="auto"``) when that
  module exists, else ``apro``.
* any other name is passed to ``clipapro.refine(image, probs, method=name)``.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

__all__ = ["get_refiner", "list_refiners", "register_refiner"]


def _none(probs: torch.Tensor, image: torch.Tensor, **_) -> torch.Tensor:
    return probs


def _apro(probs: torch.Tensor, image: torch.Tensor, **opts) -> torch.Tensor:
    import clipapro

    return clipapro.apro(probs, image, **opts)


def _has_refine_module() -> bool:
    return importlib.util.find_spec("clipapro.refiners") is not None


def _via_refine(probs: torch.Tensor, image: torch.Tensor, *, method: str, **opts) -> torch.Tensor:
    from clipapro.refiners import refine

    return refine(image, probs, method=method, **opts)


def _auto(probs: torch.Tensor, image: torch.Tensor, **opts) -> torch.Tensor:
    if _has_refine_module():
        return _via_refine(probs, image, method="auto", **opts)
    return _apro(probs, image, **opts)


_REFINERS = {"none": _none, "apro": _apro, "auto": _auto}


def register_refiner(name: str, fn) -> None:
    """Add ``fn(probs, image, **opts) -> probs`` to the registry under ``name``."""
    _REFINERS[name] = fn


def _refine_methods() -> list[str]:
    if not _has_refine_module():
        return []
    mod = importlib.import_module("clipapro.refiners")
    return sorted(getattr(mod, "REFINERS", {}))


def list_refiners() -> list[str]:
    """Registered names plus the methods of :mod:`clipapro.refiners` when it is installed."""
    return sorted(set(_REFINERS) | set(_refine_methods()))


def get_refiner(name: str, **opts):
    """The refiner ``name`` with keyword options bound: ``fn(probs, image) -> probs``.

    Example:
        >>> fn = get_refiner("apro", iterations=5)
        >>> p = torch.softmax(torch.randn(1, 3, 8, 8), 1)
        >>> fn(p, torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """
    if name in _REFINERS:
        return functools.partial(_REFINERS[name], **opts)
    if name in _refine_methods():
        return functools.partial(_via_refine, method=name, **opts)
    raise ValueError(f"unknown refiner {name!r}: use one of {list_refiners()}")
