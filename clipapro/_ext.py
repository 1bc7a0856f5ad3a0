"""Loads the compiled core ``clipapro._C``.

Importing clipapro never fails when the extension is missing (for example a source checkout that was
never built): :func:`get_ext` then returns ``None`` after one warning, and every op falls back to its
pure-torch twin. Set ``CLIPAPRO_FORCE_TORCH=1`` to use the twins even when the extension is built.
``CLIPAPRO_NUM_THREADS`` and ``CLIPAPRO_BAND_PIXELS`` tune the kernels (see the functions below).
``CLIPAPRO_EXT_PATH`` loads the compiled core from another file (the sanitizer build of
``scripts/fuzz_sanitized.sh``).
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
            ext = _load_from(os.environ["CLIPAPRO_EXT_PATH"]) if os.environ.get("CLIPAPRO_EXT_PATH") else None
            if ext is None:
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


def _load_from(path: str):
    """The compiled core from the file ``path`` (a build of ``clipapro._C`` kept elsewhere)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("clipapro._C", path)
    if spec is None or not os.path.isfile(path):
        raise ImportError(f"CLIPAPRO_EXT_PATH={path!r} is not a compiled extension file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["clipapro._C"] = module
    return module


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
    if value is None:
        return 0
    if value < 0:
        raise ValueError(f"CLIPAPRO_BAND_PIXELS must be >= 0, got {value}")
    return min(value, 2**62)  # past any image size: one band (and an int64 for the core)


def core_count() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def thread_cap() -> int:
    """Most threads a kernel starts: the core count, but at least 2, so that the two-thread paths
    (banded tree builds) behave the same on a one-core machine; 2 threads on one core cost little,
    1000 threads per call cost 60x."""
    return max(2, core_count())


def num_threads() -> int:
    """Threads the compiled kernels may use: ``CLIPAPRO_NUM_THREADS`` or torch's intra-op count,
    capped at :func:`thread_cap` (with one warning when the variable asks for more)."""
    value = _env_int("CLIPAPRO_NUM_THREADS")
    cap = thread_cap()
    if value is None:
        import torch

        return min(cap, max(1, torch.get_num_threads()))
    if value < 1:
        raise ValueError(f"CLIPAPRO_NUM_THREADS must be >= 1, got {value}")
    if value > cap:
        if _STATE.get("thread_warning") != value:
            _STATE["thread_warning"] = value
            warnings.warn(f"CLIPAPRO_NUM_THREADS={value} exceeds the {core_count()} cores available; "
                          f"the kernels use {cap} threads", RuntimeWarning, stacklevel=2)
        return cap
    return value
