"""Loads the compiled core ``clipapro._C``.

Importing clipapro never fails when the extension is missing (for example a source checkout that was
never built): :func:`get_ext` then returns ``None`` after one warning, and every op falls back to its
pure-torch twin. Set ``CLIPAPRO_FORCE_TORCH=1`` to use the twins even when the extension is built.
``CLIPAPRO_NUM_THREADS`` and ``CLIPAPRO_BAND_PIXELS`` tune the kernels (see the functions below).
"""

from __future__ import annotations

import os
import warnings

_STATE: dict = {}


def get_ext():
    """Return the ``clipapro._C`` module, or ``None`` (with one warning) when it cannot be used."""
    if "ext" in _STATE:
        return _STATE["ext"]
    ext = None
    if os.environ.get("CLIPAPRO_FORCE_TORCH", "0") != "1":
        try:
            from clipapro import _C as ext  # noqa: N811
        except ImportError as err:  # pragma: no cover - depends on the build
            warnings.warn(
                f"clipapro: the compiled core clipapro._C is not available ({err}); falling back to the "
                "pure-torch twins, which are exact but much slower. Build it with `pip install -e .`.",
                RuntimeWarning,
                stacklevel=2,
            )
    _STATE["ext"] = ext
    return ext


def has_ext() -> bool:
    """True when the compiled core is loaded and used."""
    return get_ext() is not None


def _env_int(name: str) -> int | None:
    """An integer environment setting, or None when unset; a clear error when it is not an integer."""
    env = os.environ.get(name, "").strip()
    if not env:
        return None
    try:
        return int(env)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {env!r}") from None


def band_pixels() -> int:
    """Most pixels per band of a tree build (``CLIPAPRO_BAND_PIXELS``; 0 = the kernel's default).

    A tuning and test hook: small bands make the band-join path run on small images."""
    value = _env_int("CLIPAPRO_BAND_PIXELS")
    return max(0, value) if value is not None else 0


def num_threads() -> int:
    """Threads the compiled kernels may use: ``CLIPAPRO_NUM_THREADS`` or torch's intra-op count."""
    value = _env_int("CLIPAPRO_NUM_THREADS")
    if value is not None:
        return max(1, value)
    import torch

    return max(1, torch.get_num_threads())
