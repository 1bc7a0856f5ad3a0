"""Thin ``nn.Module`` wrappers of the propagation ops (no parameters, no gradient)."""

from __future__ import annotations

import torch
from torch import nn

from clipapro._validate import check_option_names, signature_defaults
from clipapro.propagation.apro import apro
from clipapro.propagation.functional import local_filter, tree_filter

__all__ = ["APro", "LocalFilter", "TreeFilter"]


class TreeFilter(nn.Module):
    """Exact global propagation; see :func:`clipapro.tree_filter` (options and defaults as there).

    Example:
        >>> m = TreeFilter(zeta=0.05)
        >>> m(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, *, zeta: float, **options):
        super().__init__()
        check_option_names(options, tree_filter, "TreeFilter", exclude=("tree",))
        self.options = {"zeta": zeta, **signature_defaults(tree_filter, exclude=("tree",)), **options}

    def forward(self, values, guide, tree=None):
        return tree_filter(values, guide, tree=tree, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options.items())


class LocalFilter(nn.Module):
    """Local propagation; see :func:`clipapro.local_filter` (keyword options and defaults as there).

    Example:
        >>> LocalFilter(kernel_size=3)(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, **options):
        super().__init__()
        check_option_names(options, local_filter, "LocalFilter")
        self.options = {**signature_defaults(local_filter), **options}  # the defaults are local_filter's

    def forward(self, values, image):
        return local_filter(values, image, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options.items())


class APro(nn.Module):
    """APro soft-label generator; see :func:`clipapro.apro` (keyword options and defaults as there).

    Example:
        >>> APro(iterations=3)(torch.softmax(torch.randn(1, 2, 8, 8), 1), torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, **options):
        super().__init__()
        check_option_names(options, apro, "APro", exclude=("tree",))
        self.options = {**signature_defaults(apro, exclude=("tree",)), **options}

    def forward(self, probs: torch.Tensor, image: torch.Tensor):
        return apro(probs, image, **self.options)
