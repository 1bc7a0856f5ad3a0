"""Boundary F, band mIoU and thin-structure recall against values counted by hand on tiny maps, and a
brute-force reference for the boundary matching."""

import math

import numpy as np
import pytest
import torch

from clipapro.metrics import (
    EdgeScorer,
    band_confusion,
    band_miou,
    boundary_counts,
    boundary_f,
    f_from_counts,
    thin_counts,
    thin_recall,
)
from clipapro.metrics.boundary import edge_map, skeletonize, thin_parts


def halves(h=6, w=6, split=3):
    g = np.zeros((h, w), np.int64)
    g[:, split:] = 1
    return g


def square(n=10, lo=2, hi=8):
    g = np.zeros((n, n), np.int64)
    g[lo:hi, lo:hi] = 1
    return g


def pole(n=30, cols=(14, 16)):
    g = np.zeros((n, n), np.int64)
    g[:, cols[0]:cols[1]] = 1
    return g


# -- perfect prediction ---------------------------------------------------------------------------
@pytest.mark.parametrize("gt", [halves(), square(), pole()])
def test_perfect_prediction_scores_one(gt):
    assert boundary_f(gt, gt) == 1.0
    assert band_miou(gt, gt, 2) == 1.0
    r = thin_recall(gt, gt)
    assert r == 1.0 or (math.isnan(r) and thin_counts(gt, gt) == (0, 0))


def test_edge_map_marks_both_sides_and_not_the_frame():
    e = edge_map(halves())
    assert e[:, 2].all() and e[:, 3].all() and e.sum() == 12  # columns 2 and 3, nothing at the frame


# -- boundary F -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shift,inside,outside", [(1, 1, 0.5), (2, 2, 1.5), (3, 3, 2.9)])
def test_shifted_boundary_within_and_outside_tolerance(shift, inside, outside):
    gt = halves(6, 10, 4)
    pred = halves(6, 10, 4 + shift)  # the edge moved right by `shift` pixels
    assert boundary_f(pred, gt, tolerance=inside) == 1.0
    assert boundary_f(pred, gt, tolerance=outside) == 0.0


def test_shrunk_square_counted_by_hand():
    # gt: 6x6 square (rows/cols 2..7) in a 10x10 map; pred: 4x4 square (3..6).
    # class 1: pred ring 12 px, all within 1 px of the gt ring; gt ring 20 px, its 4 corners are sqrt(2)
    # from the pred ring -> P = 12/12, R = 16/20, F = 8/9.
    # class 0: pred boundary (outside the 4x4, 4-adjacent) 16 px, all 1 px from the gt ring outside the
    # 6x6 (24 px); of those 24, the 2 end pixels of each side are sqrt(2) away -> R = 16/24, F = 0.8.
    gt, pred = square(), square(lo=3, hi=7)
    counts = boundary_counts(pred, gt, tolerance=1)
    assert counts.tolist() == [[16, 16, 16, 24], [12, 12, 16, 20]]
    assert boundary_f(pred, gt, tolerance=1) == pytest.approx((0.8 + 8 / 9) / 2)
    assert boundary_f(pred, gt, tolerance=1.5) == 1.0  # sqrt(2) <= 1.5


def test_empty_prediction_and_spurious_class():
    gt = square()
    assert boundary_counts(np.zeros_like(gt), gt).tolist() == [[0, 0, 0, 24], [0, 0, 0, 20]]
    assert boundary_f(np.zeros_like(gt), gt) == 0.0
    # a speck of class 2 (absent from the gt) far inside the background: class 2 is not averaged in, but
    # the hole it cuts adds 4 false class-0 boundary pixels (5 px from any true one): P0 = 24/28
    gt = square(14)
    pred = gt.copy()
    pred[12, 11] = 2
    c = boundary_counts(pred, gt, 3)
    assert c[2].tolist() == [0, 1, 0, 0] and c[0].tolist() == [24, 28, 24, 24] and c[1].tolist() == [20] * 4
    assert f_from_counts(c) == pytest.approx((12 / 13 + 1) / 2)


def test_ground_truth_without_boundary_is_nan():
    assert math.isnan(boundary_f(np.zeros((5, 5), np.int64), np.zeros((5, 5), np.int64)))


def test_ignore_pixels_are_not_scored_but_may_match():
    # gt: class 0 | void column 3 | class 1; the predicted class-0 edge lies on the void column
    gt = np.zeros((6, 8), np.int64)
    gt[:, 3] = 255
    gt[:, 4:] = 1
    pred = halves(6, 8, 4)
    c = boundary_counts(pred, gt, 2, tolerance=1)
    assert c.tolist() == [[0, 0, 6, 6], [6, 6, 6, 6]]  # class-0 predicted edge unscored, still matches
    assert boundary_f(pred, gt, tolerance=1) == 1.0
    # a wrong prediction inside the void changes nothing
    pred2 = pred.copy()
    pred2[:, 3] = 1
    assert boundary_f(pred2, gt, tolerance=1) == 1.0


def _brute_counts(pred, gt, k, t, ignore=255):
    """O(N^2) reference: explicit edge pixels and all-pairs distances."""
    def edges(lab):
        h, w = lab.shape
        out = set()
        for y in range(h):
            for x in range(w):
                for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] != lab[y, x]:
                        out.add((y, x))
        return out

    pe = edges(pred)
    ge = {(y, x) for (y, x) in edges(gt) if gt[y, x] != ignore}
    out = np.zeros((k, 4), np.int64)

    def near(a, pts, label, lab):
        return any((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 <= t * t and lab[b] == label for b in pts)

    for y, x in pe:
        if gt[y, x] == ignore:
            continue
        c = pred[y, x]
        out[c, 1] += 1
        out[c, 0] += near((y, x), ge, c, gt)
    for y, x in ge:
        c = gt[y, x]
        out[c, 3] += 1
        out[c, 2] += near((y, x), pe, c, pred)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("t", [1, 1.5, 2, 3])
def test_boundary_counts_match_brute_force(seed, t):
    rng = np.random.default_rng(seed)
    k = 4
    gt = np.kron(rng.integers(0, k, (4, 5)), np.ones((3, 3), np.int64))  # 12 x 15 blocks
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = np.where(rng.random(gt.shape) < 0.2, rng.integers(0, k, gt.shape), np.where(gt == 255, 0, gt))
    assert boundary_counts(pred, gt, k, tolerance=t).tolist() == _brute_counts(pred, gt, k, t).tolist()


# -- band mIoU ------------------------------------------------------------------------------------
def test_band_miou_counted_by_hand():
    gt, pred = halves(4, 6), halves(4, 6, 4)
    # edges at columns 2 and 3; band 1 -> columns 1..4 (16 px): gt 0 = cols 1, 2 all predicted 0 (8);
    # gt 1 = col 3 predicted 0 (4), col 4 predicted 1 (4) -> IoU 0 = 8/12, IoU 1 = 4/8
    assert band_confusion(pred, gt, 2, band=1).tolist() == [[8, 0], [4, 4]]
    assert band_miou(pred, gt, 2, band=1) == pytest.approx((8 / 12 + 4 / 8) / 2)
    # far from the edge nothing counts: a wrong pixel at column 0 is outside a 1-px band
    pred2 = gt.copy()
    pred2[:, 0] = 1
    assert band_miou(pred2, gt, 2, band=1) == 1.0
    assert band_miou(pred2, gt, 2, band=3) < 1.0


def test_band_ignores_void_and_counts_absent_predicted_classes():
    gt = halves(4, 6)
    gt[:, 2] = 255
    pred = halves(4, 6)
    conf = band_confusion(pred, gt, 3, band=1)
    # edges: columns 1, 3 (beside the void) and the void column itself; band 1 -> columns 0..4, void excluded
    assert conf.sum() == 16 and conf[:2, :2].tolist() == [[8, 0], [0, 8]]
    pred[0, 3] = 2  # a class absent from the gt inside the band: IoU 0 for it
    assert band_miou(pred, gt, 3, band=1) == pytest.approx((1 + 7 / 8 + 0) / 3)


def test_band_without_edges_is_nan():
    z = np.zeros((4, 4), np.int64)
    assert math.isnan(band_miou(z, z, 2))


# -- thin structures ------------------------------------------------------------------------------
def test_thin_parts_by_width():
    for width, thin in [(2, True), (12, True), (13, False)]:
        m = np.zeros((40, 40), bool)
        m[:, 14:14 + width] = True
        assert thin_parts(m, max_width=12).any() == thin, width
    # a small blob is thin at max_width 12 (no 13-px disk fits in it), unless it fits in a 6x6 box (a
    # rounded-off corner or a stub shorter than max_width / 2)
    m = np.zeros((20, 20), bool)
    m[5:11, 5:12] = True
    assert thin_parts(m).sum() == 42
    m[:, 11] = False
    assert thin_parts(m).sum() == 0


def test_thin_recall_counted_by_hand():
    gt = pole()
    pred = gt.copy()
    pred[:15] = 0  # the pole's top 15 rows lost
    assert thin_counts(pred, gt) == (30, 60)
    assert thin_recall(pred, gt) == 0.5
    assert thin_recall(np.zeros_like(gt), gt) == 0.0
    # a pole 14 px wide is not thin, nor the 13-px background strips beside it (the frame does not bound)
    wide = np.zeros((30, 40), np.int64)
    wide[:, 13:27] = 1
    assert math.isnan(thin_recall(wide, wide))


def test_thin_radius_limits_the_target():
    # a 12-px-wide bar: its skeleton runs down the middle; radius 2 keeps 5 of the 12 columns
    gt = np.zeros((40, 40), np.int64)
    gt[:, 14:26] = 1
    hits, total = thin_counts(gt, gt, radius=2)
    assert hits == total and 0 < total < 12 * 40
    assert thin_counts(gt, gt, radius=12)[1] == 12 * 40


def test_thin_ignores_void():
    gt = pole()
    gt[:, 16] = 255  # void beside the pole: still thin, void pixels never in the target
    hits, total = thin_counts(gt.clip(0, 1), gt)
    assert total == 60 and hits == 60


def test_skeleton_is_thin_and_inside():
    m = np.zeros((20, 30), bool)
    m[5:12, 3:27] = True
    s = skeletonize(m)
    assert (s <= m).all() and s.sum() > 0 and s.sum(0).max() == 1  # one pixel per column


# -- the scorer, inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_edge_scorer_equals_the_functions(seed):
    rng = np.random.default_rng(seed)
    gt = np.kron(rng.integers(0, 3, (5, 5)), np.ones((6, 6), np.int64))
    gt[rng.random(gt.shape) < 0.05] = 255
    pred = np.where(rng.random(gt.shape) < 0.1, rng.integers(0, 3, gt.shape), gt.clip(0, 2))
    s = EdgeScorer(gt, 3).score(pred)
    assert s["boundary"].tolist() == boundary_counts(pred, gt, 3).tolist()
    assert s["band"].tolist() == band_confusion(pred, gt, 3).tolist()
    assert s["thin"] == thin_counts(pred, gt)


def test_tensors_and_other_integer_dtypes():
    gt, pred = square(), square(lo=3, hi=7)
    want = boundary_f(pred, gt, tolerance=1)
    assert boundary_f(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.uint8)), tolerance=1) == want


@pytest.mark.parametrize("call,match", [
    (lambda g: boundary_f(g[:5], g), "pred has shape"),
    (lambda g: boundary_f(g[None], g), "pred must be an"),
    (lambda g: boundary_f(g, g[None]), "gt must be an"),
    (lambda g: boundary_f(g, g, tolerance=0), "tolerance"),
    (lambda g: boundary_f(g, g, tolerance=float("nan")), "tolerance"),
    (lambda g: band_miou(g, g, 2, band=-1), "band"),
    (lambda g: band_miou(g, g, 0), "num_classes"),
    (lambda g: band_miou(g, g + 1, 2), "gt holds labels"),
    (lambda g: band_miou(g + 1, g, 2), "pred holds labels"),
    (lambda g: thin_recall(g, g, max_width=0), "max_width"),
    (lambda g: thin_recall(g, g, radius=-2), "radius"),
    (lambda g: boundary_f(g - 1, g), "pred holds negative"),
    (lambda g: EdgeScorer(g, 2, band=0), "band"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(square())


def test_float_labels_raise_type_error():
    g = square()
    with pytest.raises(TypeError, match="pred must hold integer"):
        boundary_f(g.astype(np.float32), g)
    with pytest.raises(ValueError, match="counts must have shape"):
        f_from_counts(np.zeros((3, 3)))
