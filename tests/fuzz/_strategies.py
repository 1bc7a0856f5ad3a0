"""Hypothesis strategies for the propagation fuzz tests: tiny grids (1x1, 1xN, Nx1 included), both
dtypes, zetas over 60 orders of magnitude, values over the float range, guides with ties, and the
memory layouts a caller may pass (contiguous, channels-last, strided, transposed)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st

DTYPES = st.sampled_from([torch.float32, torch.float64])
SIDES = st.integers(1, 6)
ZETAS = st.floats(-30.0, 30.0).map(lambda u: float(10.0**u))
LAYOUTS = st.sampled_from(["contiguous", "channels_last", "strided", "transposed"])


@st.composite
def value_scales(draw, dtype):
    """A magnitude for values: any power of ten the dtype holds, or exactly its largest value."""
    top = float(torch.finfo(dtype).max)
    if draw(st.integers(0, 9)) == 0:
        return top
    return float(10.0 ** draw(st.floats(-30.0, np.log10(top) - 0.01)))


def arrays(shape, kind: str, scale: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few levels: equal guide distances, tie-broken edges, zero distances
        a = rng.integers(0, 3, size=shape).astype(np.float64)
    elif kind == "constant":
        a = np.full(shape, rng.random())
    elif kind == "signed":
        a = rng.uniform(-1.0, 1.0, size=shape)
    else:
        a = rng.random(shape)
    return a * scale


def laid_out(a: np.ndarray, dtype, layout: str) -> torch.Tensor:
    """A (B, C, H, W) tensor with the values of ``a`` in the given memory layout."""
    t = torch.from_numpy(a).to(dtype)
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # every other column of a wider tensor
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "transposed":  # a (B, C, W, H) tensor seen through a transpose
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t.contiguous()


@st.composite
def problems(draw, guide_kinds=("uniform", "ties", "constant"), guide_decades=(-30.0, 30.0)):
    """(values, guide, meta) for one call: tensors plus the numbers the oracle needs. The guide's
    magnitude is 10^u for u in ``guide_decades``."""
    dtype = draw(DTYPES)
    b, c, f = draw(st.integers(1, 2)), draw(st.sampled_from([1, 2, 3, 7])), draw(st.integers(1, 3))
    h, w = draw(SIDES), draw(SIDES)
    seed = draw(st.integers(0, 2**31 - 1))
    vscale = draw(value_scales(dtype))
    gscale = float(10.0 ** draw(st.floats(*guide_decades)))
    vkind = draw(st.sampled_from(["uniform", "signed"]))
    gkind = draw(st.sampled_from(guide_kinds))
    v = arrays((b, c, h, w), vkind, vscale, seed)
    g = arrays((b, f, h, w), gkind, gscale, seed + 1)
    top = float(torch.finfo(dtype).max)
    v = np.clip(v, -top, top)
    values = laid_out(v, dtype, draw(LAYOUTS))
    guide = laid_out(g, dtype, draw(LAYOUTS))
    return values, guide, dict(dtype=dtype, b=b, c=c, h=h, w=w)
