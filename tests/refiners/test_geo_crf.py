"""geo-crf: valid probabilities, determinism, class counts, sizes, dtypes, bad inputs, options, and
quality on a real annotated photo against the coarse input and crf-tree."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipapro.refiners import DEFAULT_METHOD, get_refiner, refine, refiner_defaults
from clipapro.refiners.geo_crf import geo_crf

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _scene(h=40, w=48, k=3, seed=0, dtype=torch.float32):
    """Two-colour photo (left blue, right red) and a noisy prediction agreeing with it; (1, 3, H, W), (1, K, H, W)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, h, w, dtype=dtype)
    img[0, :, :, : w // 2] = torch.tensor([0.1, 0.35, 0.8], dtype=dtype)[:, None, None]
    img[0, :, :, w // 2:] = torch.tensor([0.8, 0.15, 0.15], dtype=dtype)[:, None, None]
    logits = torch.randn(1, k, h, w, generator=g, dtype=dtype)
    if k > 1:
        logits[0, 0, :, : w // 2] += 2
        logits[0, 1, :, w // 2:] += 2
    return img, torch.softmax(logits, 1)


def _check(out, like):
    assert out.shape == like.shape and out.dtype == like.dtype
    assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0
    torch.testing.assert_close(out.sum(1), torch.ones_like(out.sum(1)), atol=1e-5, rtol=0)


def test_default_is_geo_crf():
    assert DEFAULT_METHOD == "geo-crf" and get_refiner("auto").name == "geo-crf"
    img, p = _scene()
    torch.testing.assert_close(refine(img, p), refine(img, p, method="geo-crf"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_valid_deterministic_and_dtype(dtype):
    img, p = _scene(dtype=dtype)
    a, b = geo_crf(img, p), geo_crf(img, p)
    _check(a, p)
    assert torch.equal(a, b)


def test_float32_and_float64_agree():
    img, p = _scene()
    a = geo_crf(img, p)
    b = geo_crf(img.double(), p.double())
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99


@pytest.mark.parametrize("k", [1, 2, 3, 21, 150, 171, 200])
def test_class_counts(k):
    img, p = _scene(h=24, w=20, k=k)
    out = geo_crf(img, p)
    _check(out, p)
    if k == 1:
        assert torch.equal(out, torch.ones_like(p))


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (6, 1), (2, 3), (9, 17), (33, 8)])
def test_sizes(size):
    img, p = _scene(*size, k=4)
    _check(geo_crf(img, p), p)


def test_large_image_is_quick_and_valid():
    # 2048 x 2048, two classes: one tree build and a few sweeps (seconds)
    img, p = _scene(h=2048, w=2048, k=2)
    out = geo_crf(img, p, iterations=2, full_iterations=1)
    assert out.shape == p.shape and bool(torch.isfinite(out).all())
    truth = torch.zeros(2048, 2048, dtype=torch.long)
    truth[:, 1024:] = 1
    assert (out[0].argmax(0) == truth).float().mean() > 0.99


def test_batch_items_are_independent():
    img1, p1 = _scene(seed=1)
    img2, p2 = _scene(seed=2)
    both = geo_crf(torch.cat([img1, img2]), torch.cat([p1, p2]))
    torch.testing.assert_close(both[1:], geo_crf(img2, p2), atol=1e-6, rtol=0)


def test_cleans_the_two_region_scene_and_removes_an_absent_class():
    img, p = _scene(h=64, w=64, k=5, seed=3)
    truth = torch.zeros(64, 64, dtype=torch.long)
    truth[:, 32:] = 1
    before = (p[0].argmax(0) == truth).float().mean()
    out = geo_crf(img, p)
    after = (out[0].argmax(0) == truth).float().mean()
    assert before < 0.9 and after > 0.98
    # classes 2..4 have no coherent support anywhere: removed, their probability exactly 0
    assert float(out[0, 2:].max()) == 0.0


def test_presence_and_candidates_zero_keep_every_class():
    img, p = _scene(k=5)
    out = geo_crf(img, p, presence=0.0, candidates=0.0)
    assert bool((out > 0).all())


def _brute_candidates(p, scale, threshold, window):  # the scene has no near one-hot class
    """Reference of the candidate rule with explicit loops: cell means, box means, argmax counts."""
    _, k, h, w = p.shape
    gh, gw = -(-h // scale), -(-w // scale)
    cells = np.zeros((k, gh, gw))
    for i in range(gh):  # adaptive pooling: cell i spans floor(i*h/gh) .. ceil((i+1)*h/gh)
        for j in range(gw):
            y0, y1 = (i * h) // gh, -(-((i + 1) * h) // gh)
            x0, x1 = (j * w) // gw, -(-((j + 1) * w) // gw)
            cells[:, i, j] = p[0, :, y0:y1, x0:x1].double().mean((1, 2)).numpy()
    r = window // 2
    wins = np.zeros(k)
    for i in range(gh):
        for j in range(gw):
            box = cells[:, max(0, i - r):i + r + 1, max(0, j - r):j + r + 1]
            wins[box.mean((1, 2)).argmax()] += 1
    keep = wins / (gh * gw) >= threshold
    keep[wins.argmax()] = True
    return np.flatnonzero(keep)


@pytest.mark.parametrize("threshold,window", [(0.003, 5), (0.05, 1), (0.2, 3)])
def test_candidates_match_a_brute_force_reference_and_renormalise(threshold, window):
    img, p = _scene(h=36, w=44, k=6, seed=7)
    cand = _brute_candidates(p, 4, threshold, window)
    assert 1 <= len(cand) < 6
    out = geo_crf(img, p, candidates=threshold, candidate_window=window)
    sub = p[:, cand] / p[:, cand].sum(1, keepdim=True)
    ref = torch.zeros_like(p)
    ref[:, cand] = geo_crf(img, sub, candidates=0.0)
    torch.testing.assert_close(out, ref)
    dropped = np.setdiff1d(np.arange(6), cand)
    assert float(out[0, dropped].max()) == 0.0


def test_calibration_equals_dividing_each_class_by_its_maximum():
    img, p = _scene(k=4, seed=5)
    cal = p / p.amax((2, 3), keepdim=True)
    cal = cal / cal.sum(1, keepdim=True)
    torch.testing.assert_close(geo_crf(img, p, candidates=0.0),
                               geo_crf(img, cal, candidates=0.0, calibrate=False))


def _weak_scene(k, h=96, w=96, seed=0):
    """Green background, a red 48 x 36 px object scoring 1.2 on 8-px patches against a background at
    5 + 1 (the study's ``weak`` model); (1, 3, H, W), (1, K, H, W), object mask (H, W)."""
    g = torch.Generator().manual_seed(seed)
    obj = torch.zeros(h, w, dtype=torch.bool)
    obj[24:72, 30:66] = True
    img = torch.empty(1, 3, h, w)
    img[0] = torch.tensor([0.2, 0.5, 0.2])[:, None, None]
    img[0, :, obj] = torch.tensor([0.7, 0.3, 0.3])[:, None]
    img = (img + 0.03 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    frac = obj.view(h // 8, 8, w // 8, 8).float().mean((1, 3))
    logits = 0.3 * torch.randn(1, k, h // 8, w // 8, generator=g)
    logits[0, 0] += 5 * (1 - frac) + 1
    logits[0, 1] += 1.2 * frac
    logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return img, torch.softmax(logits, 1), obj


@pytest.mark.parametrize("k", [2, 21, 171])
def test_a_weak_object_survives_a_confident_background_through_calibration(k):
    img, p, obj = _weak_scene(k)

    def iou(out):
        m = out[0].argmax(0) == 1
        return float((m & obj).sum() / (m | obj).sum())

    assert iou(p) < 0.6  # the coarse map's margin is 0.2 against noise 0.3: half the object
    assert iou(geo_crf(img, p)) > 0.85
    assert iou(geo_crf(img, p, calibrate=False)) < 0.1  # without calibration the background takes it


def test_a_small_class_of_a_confident_label_map_survives_presence():
    # hard label map (0.7 / 0.3/(K-1)) with an 8 x 8 px object of its own colour: 4 of the 1024 cells
    # of the small grid (0.4 % < presence), kept because the input is near one-hot sure of it
    h = w = 128
    img = torch.zeros(1, 3, h, w)
    img[0, 2, :, : w // 2] = 0.9
    img[0, 0, :, w // 2:] = 0.9
    img[0, :, 60:68, 20:28] = torch.tensor([0.1, 0.9, 0.1])[:, None, None]
    lab = torch.zeros(h, w, dtype=torch.long)
    lab[:, w // 2:] = 1
    lab[60:68, 20:28] = 2
    p = torch.full((1, 21, h, w), 0.3 / 20)  # K = 21 (VOC): runner-up 0.015, 47 times below 0.7
    p[0].scatter_(0, lab[None], 0.7)
    out = geo_crf(img, p)[0]
    assert (out.argmax(0)[60:68, 20:28] == 2).float().mean() > 0.9
    off = geo_crf(img, p, confident_presence=0.0)[0]
    assert float(off[2].max()) == 0.0  # the plain presence rule alone removes it
    assert float(out[3:].max()) == 0.0  # classes the input never favours still go


def test_no_region_stage_is_the_full_resolution_decision_alone():
    img, p = _scene(k=3)
    out = geo_crf(img, p, iterations=0, full_iterations=0, lp_iterations=0, candidates=0.0, calibrate=False)
    torch.testing.assert_close(out, p / p.sum(1, keepdim=True))  # nothing but the renormalised unary


def test_follows_a_colour_edge_at_full_resolution():
    # the coarse boundary sits 6 px right of the colour edge; the full-res decision moves it onto it
    h, w = 48, 64
    img = torch.zeros(1, 3, h, w)
    img[0, 2, :, :32] = 0.9
    img[0, 0, :, 32:] = 0.9
    lab = torch.zeros(h, w, dtype=torch.long)
    lab[:, 38:] = 1
    p = torch.full((1, 2, h, w), 0.3)
    p[0].scatter_(0, lab[None], 0.7)
    out = geo_crf(img, p)[0].argmax(0)
    truth = torch.zeros(h, w, dtype=torch.long)
    truth[:, 32:] = 1
    assert (lab == truth).float().mean() < 0.91
    assert (out == truth).float().mean() > 0.98


@pytest.mark.parametrize(("opts", "exc", "match"), [
    ({"scale": 0}, ValueError, "scale"),
    ({"scale": 2.5}, TypeError, "scale"),
    ({"zeta": 0}, ValueError, "zeta"),
    ({"w_tree": -1}, ValueError, "w_tree"),
    ({"iterations": -1}, ValueError, "iterations"),
    ({"presence": 1.5}, ValueError, "presence"),
    ({"presence": float("nan")}, ValueError, "presence"),
    ({"confident": 1.5}, ValueError, "confident"),
    ({"confident_ratio": -1}, ValueError, "confident_ratio"),
    ({"zeta_full": -0.1}, ValueError, "zeta_full"),
    ({"full_iterations": True}, TypeError, "full_iterations"),
    ({"eps": 0}, ValueError, "eps"),
    ({"lp_iterations": -2}, ValueError, "lp_iterations"),
    ({"candidates": 2}, ValueError, "candidates"),
    ({"candidates": -0.1}, ValueError, "candidates"),
    ({"candidate_window": 0}, ValueError, "candidate_window"),
    ({"calibrate": 1}, TypeError, "calibrate"),
    ({"calibrate": "yes"}, TypeError, "calibrate"),
])
def test_bad_options(opts, exc, match):
    img, p = _scene(h=8, w=8)
    with pytest.raises(exc, match=match):
        geo_crf(img, p, **opts)


def test_bad_inputs():
    img, p = _scene(h=8, w=8)
    with pytest.raises(ValueError, match="image"):
        geo_crf(img[:, :2], p)
    with pytest.raises(ValueError, match="image"):
        geo_crf(img[..., :7], p)
    with pytest.raises(ValueError, match="probs"):
        geo_crf(img, p[0])
    with pytest.raises(TypeError, match="image"):
        geo_crf(img.numpy(), p)
    with pytest.raises(TypeError, match="unexpected keyword"):
        refine(img, p, method="geo-crf", w_treee=3)
    with pytest.raises(ValueError, match="H x W"):
        refine(img, p[..., :5], method="geo-crf")


def test_defaults_come_from_the_signature():
    d = refiner_defaults("geo-crf")
    assert d["scale"] == 4 and d["presence"] > 0 and "tree" not in d


@pytest.mark.skipif(not (DATA / "voc_extra" / "images").is_dir(), reason="needs ../shared/data/voc_extra")
def test_real_photo_beats_the_coarse_input_and_crf_tree():
    """iid 16-px patch noise (the study's model) on the VOC photos of voc_extra: geo-crf's pooled mIoU
    is far above the coarse input's and above crf-tree's."""
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    sys.path.insert(0, str(scripts))
    try:
        from refine_noise import coarse_probs
        from refine_sets import load_set
    finally:
        sys.path.remove(str(scripts))
    from clipapro.metrics import confusion_counts, metrics_from_counts

    s = load_set(DATA, "voc_extra", per_set=3)
    conf = {m: 0 for m in ("none", "crf-tree", "geo-crf")}
    for j, (_, img, gt) in enumerate(s.photos):
        p = coarse_probs(gt, s.num_classes, "iid", np.random.default_rng(j), background=s.background)
        gt_t = torch.from_numpy(gt.astype(np.int64))
        for m in conf:
            out = p if m == "none" else refine(img, p, method=m)
            conf[m] = conf[m] + confusion_counts(out.argmax(0), gt_t, s.num_classes)
    miou = {m: 100 * metrics_from_counts(c).miou for m, c in conf.items()}
    assert miou["geo-crf"] > miou["none"] + 30, miou
    assert miou["geo-crf"] > miou["crf-tree"] + 10, miou
