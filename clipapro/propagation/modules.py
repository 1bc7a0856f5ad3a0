"""Thin ``nn.Module`` wrappers of the propagation ops (no parameters, no gradient)."""

from __future__ import annotations

import torch
from torch import nn

from clipapro.propagation.apro import APRO_DEFAULTS, apro
from clipapro.propagation.functional import local_filter, tree_filter

__all__ = ["APro", "LocalFilter", "TreeFilter"]


class TreeFilter(nn.Module):
    """Exact global propagation; see :func:`clipapro.tree_filter`.

    Example:
        >>> m = TreeFilter(zeta=0.05)
        >>> m(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, *, zeta: float, normalize: bool = True, include_self: bool = True):
        super().__init__()
        self.zeta, self.normalize, self.include_self = zeta, normalize, include_self

    def forward(self, values, guide, tree=None):
        return tree_filter(values, guide, zeta=self.zeta, tree=tree, normalize=self.normalize,
                           include_self=self.include_self)

    def extra_repr(self) -> str:
        return f"zeta={self.zeta}, normalize={self.normalize}, include_self={self.include_self}"


class LocalFilter(nn.Module):
    """Local propagation; see :func:`clipapro.local_filter`.

    Example:
        >>> LocalFilter(kernel_size=3)(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, *, kernel_size: int = 5, dilation: int = 1, zeta: float = 0.15, iterations: int = 20):
        super().__init__()
        self.kernel_size, self.dilation, self.zeta, self.iterations = kernel_size, dilation, zeta, iterations

    def forward(self, values, image):
        return local_filter(values, image, kernel_size=self.kernel_size, dilation=self.dilation,
                            zeta=self.zeta, iterations=self.iterations)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, zeta={self.zeta}, "
                f"iterations={self.iterations}")


class APro(nn.Module):
    """APro soft-label generator; see :func:`clipapro.apro` (keyword options as there)."""

    def __init__(self, **options):
        super().__init__()
        self.options = {**APRO_DEFAULTS, "mode": "parallel", "label_gp": True, **options}

    def forward(self, probs: torch.Tensor, image: torch.Tensor):
        return apro(probs, image, **self.options)
