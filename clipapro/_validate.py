"""Input checks shared by every public function: validate at the boundary, trust inside.

Each check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong shape or value) with a
message that names the argument and what it got.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(x, name: str, *, ndim: int | None = None, floating: bool = False,
                 dtypes=None, finite: bool = False, nonempty: bool = True) -> torch.Tensor:
    """Check that ``x`` is a tensor with the given rank/dtype; returns it unchanged."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if dtypes is not None and x.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({allowed}), got {str(x.dtype).replace('torch.', '')}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if finite and x.numel() and not all_finite(x):
        raise ValueError(f"{name} contains NaN or Inf values (shape {tuple(x.shape)})")
    return x


def all_finite(x: torch.Tensor) -> bool:
    """True when no element is NaN/Inf. Contiguous CPU float tensors use the compiled single-pass
    check: torch's threaded reductions can stall for many milliseconds on a loaded machine."""
    if not x.is_floating_point() and not x.is_complex():
        return True
    if x.device.type == "cpu" and x.dtype in FLOAT_DTYPES and x.is_contiguous():
        from clipapro import _ext

        ext = _ext.get_ext()
        if ext is not None:
            return bool(ext.all_finite(x.detach().reshape(-1).numpy(), _ext.num_threads()))
    return bool(torch.isfinite(x).all())


def finite_abs_max(x: torch.Tensor, name: str) -> float:
    """Largest |x| of a float tensor; ``ValueError`` naming ``name`` when it has NaN or Inf values.

    One pass, like :func:`all_finite` (compiled for contiguous CPU tensors): the propagation ops use
    it both as their finite check and to see whether an input needs rescaling."""
    if x.device.type == "cpu" and x.dtype in FLOAT_DTYPES and x.is_contiguous():
        from clipapro import _ext

        ext = _ext.get_ext()
        if ext is not None:
            top = float(ext.abs_max(x.detach().reshape(-1).numpy(), _ext.num_threads()))
        else:
            top = float(x.detach().abs().max())
    else:
        top = float(x.detach().abs().max())
    if not math.isfinite(top):
        raise ValueError(f"{name} contains NaN or Inf values (shape {tuple(x.shape)})")
    return top


def check_same_dtype(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} ({a.dtype}) and {name_b} ({b.dtype}) must have the same dtype")


def check_same_device(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{name_a} is on {a.device} but {name_b} is on {b.device}")


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Check a real scalar (Python or numpy number, bools rejected) is finite and > 0 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's bool_ is no Real either
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def check_int(value, name: str, *, min_value: int | None = None, max_value: int | None = None,
              odd: bool = False) -> int:
    """Check an integer argument (Python or numpy integer, bools rejected) with optional bounds and
    oddness; returns it as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # nor an Integral
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = operator.index(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    if odd and value % 2 == 0:
        raise ValueError(f"{name} must be odd, got {value}")
    return value


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def signature_defaults(fn, *, exclude=()) -> dict:
    """Keyword defaults of ``fn`` read from its signature: where a default lives, once.

    Example:
        >>> signature_defaults(lambda x, *, a=1, b="x": None)
        {'a': 1, 'b': 'x'}
    """
    import inspect

    return {name: p.default for name, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in exclude}


def check_option_names(options: dict, fn, what: str, *, exclude=()) -> None:
    """TypeError naming the keys of ``options`` that ``fn`` does not take as keywords."""
    known = set(signature_defaults(fn, exclude=exclude))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{what} got unknown option(s) {unknown}; it takes {sorted(known)}")
