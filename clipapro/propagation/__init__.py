"""Affinity propagation: exact global (tree) and local (kernel) propagation, and APro targets.

Knows nothing of CLIP, datasets or the CLI. Functions in :mod:`.functional`, modules in
:mod:`.modules`, pure-torch twins of the compiled kernels in :mod:`._twins`.
"""

from clipapro.propagation.apro import AProTargets, apro
from clipapro.propagation.functional import KruskalTree, grid_mst, kruskal_tree, local_filter, tree_filter
from clipapro.propagation.modules import APro, LocalFilter, TreeFilter

__all__ = [
    "APro", "AProTargets", "KruskalTree", "LocalFilter", "TreeFilter", "apro", "grid_mst",
    "kruskal_tree", "local_filter", "tree_filter",
]
