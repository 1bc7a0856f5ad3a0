import os

import numpy as np
import pytest
import torch
from PIL import Image

from clipapro.adapters import boxes as boxes_mod
from clipapro.adapters import tools
from clipapro.adapters.tools import box_to_instances, box_to_probs, colour_likelihoods, scribble_to_mask


def _iou(a, b):
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def _disc_image(seed=0):
    g = torch.Generator().manual_seed(seed)
    h = w = 48
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    obj = ((yy - 22) ** 2 / 100 + (xx - 26) ** 2 / 196) <= 1
    img = torch.empty(3, h, w, dtype=torch.float64)
    img[:] = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64).view(3, 1, 1)
    img[:, obj] = torch.tensor([0.8, 0.3, 0.3], dtype=torch.float64).view(3, 1)
    img += 0.05 * torch.randn(3, h, w, generator=g, dtype=torch.float64)
    return img.clamp(0, 1), obj


def test_colour_likelihoods_are_normalised_histograms():
    img = torch.rand(3, 10, 10, dtype=torch.float64)
    lik = colour_likelihoods(img, torch.ones(1, 10, 10), bins=4, smooth=0)
    idx = tools._colour_index(img, 4)
    counts = torch.bincount(idx, minlength=64).double() / 100
    torch.testing.assert_close(lik[0].flatten(), counts[idx] + 1e-8)


def test_box_tool_beats_filled_box_and_shares_one_tree(monkeypatch):
    calls = []
    real = tools.kruskal_tree
    monkeypatch.setattr(tools, "kruskal_tree", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(boxes_mod, "kruskal_tree", lambda *a, **k: calls.append(2) or real(*a, **k))
    img, obj = _disc_image()
    box = [[12, 12, 41, 33]]
    p = box_to_probs(img, box, rounds=3)
    assert calls == [1]
    assert p.shape == (1, 48, 48) and (p[0][~boxes_mod.box_masks(torch.tensor(box), 48, 48)[0]] == 0).all()
    filled = boxes_mod.box_masks(torch.tensor(box), 48, 48)[0]
    assert _iou(p[0] > 0.5, obj) > _iou(filled, obj) + 0.1
    inst = box_to_instances(img, box + [[0, 0, 8, 8]])
    assert set(inst.unique().tolist()) <= {0, 1, 2} and bool((inst == 1).any())


def test_box_covering_the_whole_image_still_works():
    img, obj = _disc_image()
    p = box_to_probs(img, [[0, 0, 48, 48]])
    assert _iou(p[0] > 0.5, obj) > 0.5


def test_scribble_tool_recovers_regions():
    img, obj = _disc_image(1)
    s = torch.full((48, 48), 255)
    s[22, 20:32] = 7
    s[3, 5:40] = 0
    s[45, 5:40] = 0
    out = scribble_to_mask(img, s)
    assert set(out.unique().tolist()) == {0, 7}
    assert _iou(out == 7, obj) > 0.9
    assert (scribble_to_mask(img, torch.where(s == 0, 255, s)) == 7).all()


def test_scribble_tool_errors():
    img = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="no labelled"):
        scribble_to_mask(img, torch.full((8, 8), 255))
    with pytest.raises(ValueError, match=r"\(H, W\) = \(8, 8\)"):
        scribble_to_mask(img, torch.zeros(8, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        scribble_to_mask(torch.rand(4, 8, 8), torch.zeros(8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        box_to_probs(img, [[0, 0, 9, 4]])


def test_real_photo_beats_trivial_answers(shared_data):
    from scipy import ndimage

    d = os.path.join(shared_data, "voc_samples")
    img = torch.from_numpy(np.array(Image.open(os.path.join(d, "images", "voc_8.png")).convert("RGB")))
    img = img.permute(2, 0, 1).double() / 255
    gt = np.array(Image.open(os.path.join(d, "masks", "voc_8.png"))).astype(np.int64)
    fg = gt == 13
    comp, _ = ndimage.label(fg)
    big = comp == np.bincount(comp[fg]).argmax()
    ys, xs = np.nonzero(big)
    box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
    valid = gt != 255
    mask = box_to_probs(img, box)[0].numpy() > 0.5
    filled = boxes_mod.box_masks(torch.tensor(box, dtype=torch.float64), *gt.shape)[0].numpy()
    assert _iou(mask & valid, big) > _iou(filled & valid, big)
    s = np.full(gt.shape, 255)
    rows = np.zeros_like(fg)
    rows[::40] = True
    s[rows & ndimage.binary_erosion(gt == 0, iterations=6)] = 0
    s[rows & ndimage.binary_erosion(fg, iterations=6)] = 13
    ours = scribble_to_mask(img, torch.from_numpy(s)).numpy()
    _, (iy, ix) = ndimage.distance_transform_edt(s == 255, return_indices=True)
    nearest = s[iy, ix]
    assert _iou((ours == 13) & valid, fg) > _iou((nearest == 13) & valid, fg)


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_box_to_probs_in_chunks_equals_all_boxes_at_once(chunk):
    g = torch.Generator().manual_seed(4)
    img = torch.rand(3, 40, 52, generator=g, dtype=torch.float64)
    img[:, 10:30, 12:40] *= 0.3
    boxes = [[2, 3, 20, 25], [10, 8, 42, 33], [0, 0, 52, 40], [30, 20, 50, 38], [5, 5, 15, 15], [12, 10, 40, 30],
             [40, 0, 52, 12]]
    whole = box_to_probs(img, boxes, rounds=2, chunk=16)
    torch.testing.assert_close(box_to_probs(img, boxes, rounds=2, chunk=chunk), whole, rtol=0, atol=1e-12)


def test_box_to_probs_rejects_a_bad_chunk():
    with pytest.raises(ValueError, match="chunk"):
        box_to_probs(torch.rand(3, 8, 8), [[0, 0, 4, 4]], chunk=0)
