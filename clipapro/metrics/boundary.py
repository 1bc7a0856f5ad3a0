"""Boundary and thin-structure scores of a label map against its ground truth.

mIoU is dominated by the interiors of large regions; these three scores look where refinement
differs: at the edges and in thin parts (legs, poles, bicycle frames).

* :func:`boundary_f` / :func:`boundary_counts`: the per-class boundary F-measure of Csurka et al.
  ("What is a good evaluation measure for semantic segmentation?", BMVC 2013; MATLAB's ``bfscore``):
  a boundary pixel of class c is *matched* when a boundary pixel of class c of the other map lies
  within ``tolerance`` pixels (Euclidean distance between pixel centres). This is distance
  thresholding, not the one-to-one bipartite matching of DAVIS (Perazzi et al. 2016).
* :func:`band_miou` / :func:`band_confusion`: mIoU counted only on the pixels within ``band`` pixels
  of a ground-truth edge (the "trimap" evaluation of Kohli et al. 2009 / Chen et al., DeepLab).
* :func:`thin_recall` / :func:`thin_counts`: recall of the ground-truth pixels of class c within
  ``radius`` pixels of the skeleton of the thin parts of class c.

Conventions shared by all of them: label maps are (H, W) integers, numpy arrays or tensors; ground
truth ``ignore_index`` (255) pixels are never scored; the image frame is not an edge (a region cut by
the frame is not bounded there); a pixel is an *edge pixel of class c* when it has class c and one of
its 4 neighbours inside the image has another label (void included: VOC's void band is drawn over
object contours). The ``*_counts`` / ``*_confusion`` forms return additive counts, so a data set's
score pools its images (``sum`` the counts, then :func:`f_from_counts`, :func:`metrics_from_counts`
or hits / total).

Example:
    >>> import numpy as np
    >>> gt = np.zeros((6, 6), np.int64); gt[:, 3:] = 1
    >>> boundary_f(gt, gt), band_miou(gt, gt, 2)
    (1.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np

from clipapro._deps import require
from clipapro.io import IGNORE_INDEX

__all__ = [
    "EdgeScorer", "band_confusion", "band_miou", "boundary_counts", "boundary_f", "edge_map", "f_from_counts",
    "skeletonize", "thin_counts", "thin_parts", "thin_recall",
]


def _ndimage():
    return require("scipy.ndimage", what="the boundary metrics")


def _labels(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) label map, got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {int(arr.min())})")
    return arr.astype(np.int64, copy=False)


def _pair(pred, gt, num_classes, ignore_index):
    p, g = _labels(pred, "pred"), _labels(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred has shape {p.shape} but gt has shape {g.shape}")
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    valid = g != ignore_index
    if num_classes is None:
        num_classes = int(max(p.max(initial=-1), g[valid].max(initial=-1))) + 1
    elif not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if (g[valid] >= num_classes).any():
        raise ValueError(f"gt holds labels {np.unique(g[valid][g[valid] >= num_classes])[:8].tolist()} outside "
                         f"0..{num_classes - 1} (ignore_index={ignore_index})")
    if (p >= num_classes).any():
        raise ValueError(f"pred holds labels {np.unique(p[p >= num_classes])[:8].tolist()} outside "
                         f"0..{num_classes - 1}")
    return p, g, valid, int(num_classes)


def _positive(value, name: str, *, integer: bool = False):
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive int" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def edge_map(labels) -> np.ndarray:
    """Edge pixels (H, W) bool: pixels with a 4-neighbour of another label (the frame is not an edge).

    Example:
        >>> edge_map(np.array([[0, 0, 1, 1]])).astype(int).tolist()
        [[0, 1, 1, 0]]
    """
    lab = _labels(labels, "labels")
    e = np.zeros(lab.shape, bool)
    dy = lab[1:] != lab[:-1]
    dx = lab[:, 1:] != lab[:, :-1]
    e[1:] |= dy
    e[:-1] |= dy
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    return e


def _within(mask: np.ndarray, distance: float) -> np.ndarray:
    """Pixels within ``distance`` (Euclidean, pixel centres) of a True pixel of ``mask``."""
    if not mask.any():
        return np.zeros_like(mask)
    return _ndimage().distance_transform_edt(~mask) <= distance


def _disk_offsets(radius: float) -> list[tuple[int, int]]:
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def _near_same_label(at: np.ndarray, edges_lab: np.ndarray, tolerance: float) -> np.ndarray:
    """(H, W) bool: an edge pixel of ``edges_lab`` (labels, -1 = not an edge) with label ``at[y, x]``
    lies within ``tolerance`` of (y, x). One shifted comparison per offset of the disk, all classes at
    once (exactly the distance test on pixel centres)."""
    h, w = at.shape
    r = int(math.floor(tolerance))
    pad = np.pad(edges_lab, r, constant_values=-1)
    hit = np.zeros((h, w), bool)
    for dy, dx in _disk_offsets(tolerance):
        hit |= pad[r + dy:r + dy + h, r + dx:r + dx + w] == at
    return hit


def _boundary_counts(p, g, valid, k, tolerance, g_edges=None):
    pe = edge_map(p)
    ge = edge_map(g) if g_edges is None else g_edges
    ge &= valid  # a ground-truth edge pixel has a class (void pixels are edges of nothing)
    pe_lab = np.where(pe, p, -1)
    ge_lab = np.where(ge, g, -1)
    scored = pe & valid
    p_hit = scored & _near_same_label(p, ge_lab, tolerance)
    g_hit = ge & _near_same_label(g, pe_lab, tolerance)
    out = np.zeros((k, 4), np.int64)
    out[:, 0] = np.bincount(p[p_hit], minlength=k)
    out[:, 1] = np.bincount(p[scored], minlength=k)
    out[:, 2] = np.bincount(g[g_hit], minlength=k)
    out[:, 3] = np.bincount(g[ge], minlength=k)
    return out


def boundary_counts(pred, gt, num_classes: int | None = None, *, tolerance: float = 2,
                    ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-class boundary match counts (num_classes, 4) int64: matched predicted boundary pixels,
    predicted boundary pixels, matched ground-truth boundary pixels, ground-truth boundary pixels.

    Boundary pixels of class c are its edge pixels (module docstring) in each map. Predicted boundary
    pixels on void ground truth are not counted (nobody knows where the edge is there) but may match a
    ground-truth boundary pixel nearby. Additive over images.

    Args:
        pred, gt: (H, W) integer label maps; ``pred`` in 0..num_classes-1, ``gt`` too or ignore_index.
        num_classes: K (default: the largest label present + 1).
        tolerance: matching distance in pixels (> 0).

    Example:
        >>> g = np.zeros((6, 6), np.int64); g[:, 3:] = 1
        >>> boundary_counts(g, g).tolist()
        [[6, 6, 6, 6], [6, 6, 6, 6]]
    """
    p, g, valid, k = _pair(pred, gt, num_classes, ignore_index)
    _positive(tolerance, "tolerance")
    return _boundary_counts(p, g, valid, k, tolerance)


def f_from_counts(counts) -> float:
    """Mean boundary F over the classes with ground-truth boundary pixels, from :func:`boundary_counts`
    (summed over images); F_c = 2 P R / (P + R), 0 when the prediction has no boundary of class c;
    P = 1 when none of its boundary pixels is scored (they all lie on void); NaN when the ground
    truth has no boundary. A class with boundaries only in the prediction is not
    averaged in (mIoU already charges a whole class for it), but its specks still cost: they cut holes,
    and so false boundaries, into the regions of the true classes.

    Example:
        >>> f_from_counts(np.array([[3, 4, 1, 2], [0, 5, 0, 0]]))  # class 0: P = 3/4, R = 1/2
        0.6
    """
    c = np.asarray(counts, np.float64)
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError(f"counts must have shape (K, 4), got {c.shape}")
    used = c[:, 3] > 0
    if not used.any():
        return float("nan")
    prec = np.divide(c[:, 0], c[:, 1], out=np.ones(len(c)), where=c[:, 1] > 0)  # no scored pixel: no false one
    rec = np.divide(c[:, 2], c[:, 3], out=np.zeros(len(c)), where=c[:, 3] > 0)
    f = np.divide(2 * prec * rec, prec + rec, out=np.zeros(len(c)), where=(prec + rec) > 0)
    return round(float(f[used].mean()), 12)


def boundary_f(pred, gt, *, tolerance: float = 2, ignore_index: int = IGNORE_INDEX) -> float:
    """Boundary F-measure in [0, 1] of one label map (Csurka et al. 2013, per class, distance matching):
    :func:`f_from_counts` of :func:`boundary_counts`. NaN when the ground truth has no boundary.

    Example:
        >>> g = np.zeros((6, 6), np.int64); g[:, 3:] = 1
        >>> p = np.zeros((6, 6), np.int64); p[:, 4:] = 1   # edge one pixel off
        >>> boundary_f(p, g, tolerance=1), boundary_f(p, g, tolerance=0.5)
        (1.0, 0.0)
    """
    return f_from_counts(boundary_counts(pred, gt, tolerance=tolerance, ignore_index=ignore_index))


def band_confusion(pred, gt, num_classes: int, *, band: float = 8, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion counts (K, K) int64 (row = ground truth, column = prediction) of the labelled pixels
    within ``band`` pixels (Euclidean) of a ground-truth edge pixel. Additive over images.

    Example:
        >>> g = np.zeros((4, 6), np.int64); g[:, 3:] = 1
        >>> band_confusion(g, g, 2, band=1).tolist()
        [[8, 0], [0, 8]]
    """
    p, g, valid, k = _pair(pred, gt, num_classes, ignore_index)
    _positive(band, "band")
    return _band_confusion(p, g, k, _within(edge_map(g), band) & valid)


def _band_confusion(p, g, k, inside):
    return np.bincount(g[inside] * k + p[inside], minlength=k * k).reshape(k, k)


def _miou(conf: np.ndarray) -> float:
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    used = union > 0
    return float((inter[used] / union[used]).mean()) if used.any() else float("nan")


def band_miou(pred, gt, num_classes: int, *, band: float = 8, ignore_index: int = IGNORE_INDEX) -> float:
    """mIoU in [0, 1] inside the ``band``-pixel band around ground-truth edges (:func:`band_confusion`),
    over the classes present there in either map (mmseg's convention: a predicted class absent from
    the ground truth scores IoU 0); NaN when the ground truth has no edge.

    Example:
        >>> g = np.zeros((4, 6), np.int64); g[:, 3:] = 1
        >>> p = np.zeros((4, 6), np.int64); p[:, 4:] = 1
        >>> band_miou(p, g, 2, band=1)  # band = columns 1..4; IoU 0: 8/12, IoU 1: 4/8
        0.5833333333333333
    """
    return _miou(band_confusion(pred, gt, num_classes, band=band, ignore_index=ignore_index))


def skeletonize(mask) -> np.ndarray:
    """One-pixel-wide skeleton (H, W) bool of a binary mask: ``skimage.morphology.skeletonize``
    (scikit-image's lookup-table form of Zhang-Suen thinning, which keeps 2-pixel-thick pieces that
    the textbook algorithm deletes). Required rather than replaced by a fallback, so a score never
    depends on what is installed.

    Example:
        >>> m = np.zeros((5, 9), bool); m[2, 1:8] = True
        >>> skeletonize(m).sum()
        np.int64(7)
    """
    img = np.asarray(mask)
    if img.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {img.shape}")
    morphology = require("skimage.morphology", what="the thin-structure score")
    return morphology.skeletonize(img.astype(bool))


def thin_parts(mask, *, max_width: float = 12) -> np.ndarray:
    """The thin parts (H, W) bool of a binary mask: the mask minus its morphological opening with
    the disk of radius ``r = max_width / 2`` (pixel centres within that distance), i.e. every pixel that
    no such disk inside the mask covers. A straight bar at most ``max_width`` pixels wide is all thin
    (for an even ``max_width``; for an odd one, also bars one pixel wider). Connected pieces (8-
    connected) whose bounding box is at most ``ceil(r)`` pixels on both sides are dropped: they are
    the corners the disk rounds off (and stubs shorter than r), not structures. Outside the image
    counts as inside the mask (the frame cuts a region, it does not bound it).

    Example:
        >>> m = np.zeros((40, 30), bool); m[15:35, 5:25] = True; m[:, 14:16] = True  # square + 2-px pole
        >>> t = thin_parts(m)   # the pole's rows 0..13 above the square (a disk in it reaches row 14);
        >>> int(t.sum()), t.any(1).nonzero()[0].tolist() == list(range(14))  # the 4-row stub below is dropped
        (28, True)
    """
    _positive(max_width, "max_width")
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    if not m.any():
        return m.copy()
    nd = _ndimage()
    r = max_width / 2
    eroded = nd.distance_transform_edt(m) > r
    opened = nd.distance_transform_edt(~eroded) <= r if eroded.any() else np.zeros_like(m)
    thin = m & ~opened
    lab, n = nd.label(thin, structure=np.ones((3, 3), bool))
    small = math.ceil(r)
    for i, box in enumerate(nd.find_objects(lab), start=1):
        if box[0].stop - box[0].start <= small and box[1].stop - box[1].start <= small:
            thin[box] &= lab[box] != i
    return thin


def thin_counts(pred, gt, *, max_width: float = 12, radius: float = 4,
                ignore_index: int = IGNORE_INDEX) -> tuple[int, int]:
    """(hits, total): the ground-truth pixels of class c within ``radius`` pixels of the skeleton
    (:func:`skeletonize`) of the thin parts (:func:`thin_parts`) of class c, over all classes, and
    how many of them ``pred`` labels c. Void pixels are not in any class. Additive over images.

    Example:
        >>> g = np.zeros((30, 30), np.int64); g[:, 14:16] = 1   # a 2-px pole (the background is not thin)
        >>> p = g.copy(); p[:15] = 0                            # its top half lost
        >>> thin_counts(p, g)
        (30, 60)
    """
    p, g, valid, _ = _pair(pred, gt, None, ignore_index)
    _positive(max_width, "max_width")
    _positive(radius, "radius")
    target = _thin_target(g, valid, max_width, radius)
    return int(np.count_nonzero(target & (p == g))), int(np.count_nonzero(target))


def _thin_target(g, valid, max_width, radius) -> np.ndarray:
    """Ground-truth pixels (H, W) bool within ``radius`` of the skeleton of their class's thin parts."""
    target = np.zeros(g.shape, bool)
    for c in np.unique(g[valid]):
        thin = thin_parts(g == c, max_width=max_width)
        if thin.any():
            target |= _within(skeletonize(thin), radius) & (g == c)
    return target


def thin_recall(pred, gt, *, max_width: float = 12, radius: float = 4, ignore_index: int = IGNORE_INDEX) -> float:
    """Thin-structure recall in [0, 1]: hits / total of :func:`thin_counts`; NaN when the ground truth
    has no thin part.

    Example:
        >>> g = np.zeros((30, 30), np.int64); g[:, 14:16] = 1
        >>> thin_recall(g, g), thin_recall(np.zeros_like(g), g), thin_recall(g, np.zeros_like(g))
        (1.0, 0.0, nan)
    """
    hits, total = thin_counts(pred, gt, max_width=max_width, radius=radius, ignore_index=ignore_index)
    return hits / total if total else float("nan")


class EdgeScorer:
    """All three scores of many predictions of one ground truth, the ground-truth work done once
    (edges, the band, the thin-part targets): what a study scoring several methods per photo needs.

    Example:
        >>> g = np.zeros((30, 30), np.int64); g[:, 14:16] = 1
        >>> s = EdgeScorer(g, 2).score(g)
        >>> s["boundary"].tolist(), int(s["band"].trace()), s["thin"]
        ([[60, 60, 60, 60], [60, 60, 60, 60]], 600, (60, 60))
    """

    def __init__(self, gt, num_classes: int, *, tolerance: float = 2, band: float = 8, max_width: float = 12,
                 radius: float = 4, ignore_index: int = IGNORE_INDEX):
        g = _labels(gt, "gt")
        _, g, valid, k = _pair(np.zeros_like(g), g, num_classes, ignore_index)
        for value, name in ((tolerance, "tolerance"), (band, "band"), (max_width, "max_width"), (radius, "radius")):
            _positive(value, name)
        self.gt, self.valid, self.num_classes, self.tolerance = g, valid, k, tolerance
        self.ignore_index = ignore_index
        self.edges = edge_map(g)
        self.band = _within(self.edges, band) & valid
        self.thin = _thin_target(g, valid, max_width, radius)

    def score(self, pred) -> dict:
        """``{"boundary": (K, 4) counts, "band": (K, K) confusion, "thin": (hits, total)}`` of ``pred``
        (H, W), each as :func:`boundary_counts`, :func:`band_confusion`, :func:`thin_counts` give it."""
        p, g, valid, k = _pair(pred, self.gt, self.num_classes, self.ignore_index)
        return {
            "boundary": _boundary_counts(p, g, valid, k, self.tolerance, self.edges.copy()),
            "band": _band_confusion(p, g, k, self.band),
            "thin": (int(np.count_nonzero(self.thin & (p == g))), int(np.count_nonzero(self.thin))),
        }
