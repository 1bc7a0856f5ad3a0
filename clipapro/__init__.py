"""clipapro: segmentation without pixel annotations.

CLIP gives a coarse dense prediction of any vocabulary; affinity propagation (APro) refines it with
the image into pseudo labels; a student trained on them gives the final segmenter.

The propagation ops are available at the top level::

    import clipapro
    edges, weights = clipapro.grid_mst(guide)                  # (B, N-1, 2), (B, N-1)
    y = clipapro.tree_filter(values, guide, zeta=0.01)         # global propagation (exact)
    y = clipapro.local_filter(values, image, kernel_size=5)    # local propagation
    targets = clipapro.apro(probs, image)                      # APro soft labels
    refined = clipapro.refine(image, probs)                    # the default refiner (geo-crf)

Subpackages (``clipapro.clip``, ``clipapro.data``, ``clipapro.adapters``, ...) are imported on use.
"""

from clipapro.propagation import apro, grid_mst, kruskal_tree, local_filter, tree_filter

__version__ = "0.1.0"

__all__ = ["apro", "grid_mst", "kruskal_tree", "local_filter", "tree_filter", "__version__"]

_LAZY = {"refine": ("clipapro.refiners", "refine")}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'clipapro' has no attribute {name!r}")
