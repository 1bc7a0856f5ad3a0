"""Boundary checks and rescaling shared by the propagation ops (compiled core and twins alike).

Validate at the boundary: shapes, dtypes, sizes the core supports, finite inputs, and prebuilt
trees. Rescale where the maths allows: the results depend on the guide only through
``|f_i - f_j|^2 / zeta^2``, so a guide and its zeta scaled by the same power of two give the same
result (exactly, barring underflow), and a normalised filter is a weighted mean, so values scaled
by a power of two give the result scaled by it. That keeps squared distances and channel sums in
range for guides or values near the limits of their dtype instead of returning NaN or Inf.
"""

from __future__ import annotations

import math
import os

import torch

from clipapro._validate import FLOAT_DTYPES, check_tensor, finite_abs_max

#: Most pixels per image: node ids of the compiled trees are int32 (see csrc/bindings.cpp).
MAX_PIXELS = 2**29

# Guides whose largest |value| lies in this range are used as they are (squared distances of F
# channels neither overflow nor lose their low bits to underflow); others are rescaled.
_GUIDE_RANGE = {torch.float32: (2.0**-31, 2.0**32), torch.float64: (2.0**-255, 2.0**256)}
_SMALLEST_ZETA = 5e-324  # the smallest positive double: a zeta scaled below it behaves as it does


def check_size(x: torch.Tensor, name: str) -> None:
    h, w = x.shape[-2:]
    if h * w > MAX_PIXELS:
        raise ValueError(f"{name} has H x W = {h} x {w} = {h * w} pixels; at most 2^29 = {MAX_PIXELS} are supported")


def check_image(x, name: str) -> float:
    """A (B, F, H, W) float32/float64 tensor of finite values and a supported size; returns max |x|."""
    check_tensor(x, name, ndim=4, dtypes=FLOAT_DTYPES)
    check_size(x, name)
    return finite_abs_max(x, name)


def check_distances_fit(gmax: float, channels: int, dtype: torch.dtype, name: str) -> None:
    """ValueError naming the guide when its squared distances cannot be represented in its dtype
    (a :class:`KruskalTree` stores them: there is no rescaling them away)."""
    top = torch.finfo(dtype).max
    if 4.0 * channels * gmax * gmax > top:
        raise ValueError(f"{name} has values up to {gmax:.3g}: squared distances between pixels would overflow "
                         f"{str(dtype).replace('torch.', '')}; scale the guide down (and zeta with it) or use float64")


def guide_scale(gmax: float, dtype: torch.dtype) -> float:
    """A power of two s that brings max |guide| into [0.5, 1), or 1.0 when the guide needs none."""
    lo, hi = _GUIDE_RANGE[dtype]
    if gmax == 0.0 or lo <= gmax <= hi:
        return 1.0
    return math.ldexp(1.0, -math.frexp(gmax)[1])


def scaled_zeta(zeta: float, scale: float) -> float:
    """zeta on a guide scaled by ``scale``, kept a positive finite double (beyond that range the
    affinities are the same: 0 off ties, 1 on them)."""
    return min(max(zeta * scale, _SMALLEST_ZETA), 1.7976931348623157e308)


def value_shift(vmax: float, count: int, dtype: torch.dtype) -> int:
    """k >= 0 such that sums of ``count`` values scaled by 2^-k stay under a quarter of the dtype's
    largest value (0 for all but values near it)."""
    limit = torch.finfo(dtype).max / 4.0 / count
    return 0 if vmax <= limit else math.frexp(vmax / limit)[1]


def check_kruskal_tree(kt, values: torch.Tensor, vname: str, gname: str) -> None:
    """Types and shapes of a prebuilt tree against ``values``; the links themselves are checked
    where they are followed (the compiled sweep, or :func:`tree_structure_error` for the twin)."""
    b, _, h, w = values.shape
    n = h * w
    size = kt.size
    if (not isinstance(size, tuple) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise ValueError(f"{gname}.size must be a tuple (H, W) of two positive ints, got {size!r}")
    if values.shape[-2:] != size:
        raise ValueError(f"{vname} has H x W = {tuple(values.shape[-2:])} but the tree was built for {size}")
    for field, dtypes, width in (("parent", (torch.int32,), 2 * n - 1), ("height", FLOAT_DTYPES, n - 1)):
        t = getattr(kt, field)
        check_tensor(t, f"{gname}.{field}", ndim=2, dtypes=dtypes, nonempty=False)
        if t.shape[0] != b:
            raise ValueError(f"{vname} has batch {b} but the tree has {t.shape[0]} ({gname}.{field} {tuple(t.shape)})")
        if t.shape[1] != width:
            raise ValueError(f"{gname}.{field} must have shape (B, {width}) for a tree of {h} x {w} pixels, got "
                             f"{tuple(t.shape)}")
    if values.dtype != kt.height.dtype:
        raise TypeError(f"{vname} ({values.dtype}) and the tree ({kt.height.dtype}) must have the same dtype")


def tree_structure_error(parent: torch.Tensor, height: torch.Tensor, n: int) -> str | None:
    """What the compiled sweep checks (csrc/tree/validate.h), for one tree, in torch: parent (2n-1)
    int64, height (n-1). Returns a message, or None when the tree is sound."""
    if n == 1:
        return None if int(parent[0]) == -1 else f"parent[0] = {int(parent[0])}: a one-pixel tree's root is -1"
    if int(parent[n]) != -1:
        return f"parent[{n}] = {int(parent[n])}: the root (node N = {n}) must have parent -1"
    leaves, inner = parent[:n], parent[n + 1:]
    bad = torch.nonzero((leaves < n) | (leaves >= 2 * n - 1)).flatten()
    if bad.numel():
        v = int(bad[0])
        return f"parent[{v}] = {int(parent[v])}: a pixel's parent must be an internal node in [{n}, {2 * n - 1})"
    if not bool(torch.isfinite(height).all()) or bool((height < 0).any()):
        j = int(torch.nonzero(~(torch.isfinite(height) & (height >= 0))).flatten()[0])
        return f"height[{j}] = {float(height[j])}: heights must be finite and >= 0"
    own = torch.arange(n + 1, 2 * n - 1, device=parent.device)
    bad = torch.nonzero((inner < n) | (inner >= own)).flatten()
    if bad.numel():
        v = n + 1 + int(bad[0])
        return f"parent[{v}] = {int(parent[v])}: an internal node's parent must come before it, in [{n}, {v})"
    kids = torch.bincount(torch.cat([leaves, inner]) - n, minlength=n - 1)
    if bool((kids > 2).any()):
        return f"node {n + int(torch.nonzero(kids > 2).flatten()[0])} has more than two children"
    lower = torch.nonzero(height[inner - n] < height[1:]).flatten()
    if lower.numel():
        j = 1 + int(lower[0])
        return f"height[{j}] = {float(height[j])} is above its parent's: a node is never lower than its children"
    return None


def check_kernel_reach(kernel_size: int, dilation: int) -> None:
    reach = (kernel_size // 2) * dilation
    if reach > MAX_PIXELS:
        raise ValueError(f"kernel_size={kernel_size} with dilation={dilation} reaches {reach} pixels from the centre, "
                         f"more than the largest image side the core supports (2^29 = {MAX_PIXELS}): neighbours "
                         "that far are outside every image")


def local_offsets(kernel_size: int, dilation: int, h: int, w: int) -> tuple[int, int]:
    """Kernel steps (ry, rx) that can land inside an h x w image (as csrc/local/local_filter.h)."""
    r = kernel_size // 2
    return min(r, (h - 1) // dilation), min(r, (w - 1) // dilation)


def check_local_memory(values: torch.Tensor, kernel_size: int, dilation: int, images: int) -> None:
    """MemoryError naming the sizes when local_filter's weights and buffers for ``images`` images at
    a time (the twin: the whole batch; the core: one per thread) exceed the machine's memory."""
    _, c, h, w = values.shape
    ry, rx = local_offsets(kernel_size, dilation, h, w)
    kk = (2 * ry + 1) * (2 * rx + 1)
    plane = (h + 2 * ry * dilation) * (w + 2 * rx * dilation)
    need = images * (kk * h * w + 2 * c * plane) * values.element_size()
    phys = _physical_memory()
    if phys and need > phys:
        raise MemoryError(f"local_filter of values {tuple(values.shape)} with kernel_size={kernel_size} and "
                          f"dilation={dilation} ({2 * ry + 1} x {2 * rx + 1} offsets inside the image) needs about "
                          f"{need >> 20} MiB, more than this machine's {phys >> 20} MiB")


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0
