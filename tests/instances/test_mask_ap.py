"""mask_ap against values computed by hand with COCO's rules (greedy matching by score, IoU >= t,
101-point interpolated precision), RLE helpers and per-instance IoU."""

import math

import numpy as np
import pytest
import torch

from clipapro.data.instances import CocoInstances, coco_from_dict
from clipapro.metrics.instances import (
    ap_markdown,
    encode_masks,
    instance_ious,
    json_safe,
    mask_ap,
    masks_to_results,
    mean_instance_iou,
)

from ._files import rect_mask, write_coco

H, W = 30, 40


def _gt(masks, cats=(1,)):
    from pycocotools import mask as mask_util

    anns = []
    for k, (cat, m) in enumerate(masks):
        rle = encode_masks(m[None])[0]
        anns.append({"id": k + 1, "image_id": 1, "category_id": cat, "segmentation": rle, "iscrowd": 0,
                     "area": float(m.sum()), "bbox": list(map(float, mask_util.toBbox(rle)))})
    return coco_from_dict({"images": [{"id": 1, "width": W, "height": H}], "annotations": anns,
                           "categories": [{"id": c, "name": f"c{c}"} for c in cats]})


def _inside(gt_mask, n):
    """A prediction made of the first n pixels (row-major) of a ground-truth mask: IoU = n / |gt|."""
    m = np.zeros_like(gt_mask)
    ys, xs = np.nonzero(gt_mask)
    m[ys[:n], xs[:n]] = True
    return m


@pytest.fixture
def two():
    a, b = rect_mask(H, W, 2, 2, 12, 12), rect_mask(H, W, 20, 5, 30, 15)  # 100 pixels each
    return a, b, _gt([(1, a), (1, b)])


def test_hand_computed_ap_of_iou_062_and_083(two):
    a, b, gt = two
    pa, pb = _inside(a, 62), _inside(b, 83)
    assert instance_ious(np.stack([a, b]), np.stack([pa, pb])).tolist() == pytest.approx([0.62, 0.83])
    # t = .50 .55 .60: both hits -> AP_t = 1. t = .65 .. .80: only the 0.83 one hits; ranked second, so
    # precision 1/2 at recall 1/2 -> 51 of 101 recall points at 0.5. t = .85 .. .95: no hit -> 0.
    r = mask_ap(gt, masks_to_results(1, np.stack([pa, pb]), [1, 1], [0.9, 0.8]))
    ap_mid = 51 * 0.5 / 101
    assert r["AP50"] == pytest.approx(100)
    assert r["AP75"] == pytest.approx(100 * ap_mid)
    assert r["AP"] == pytest.approx(100 * (3 + 4 * ap_mid) / 10)
    assert r["APs"] == pytest.approx(r["AP"]) and math.isnan(r["APm"]) and math.isnan(r["APl"])  # 100 px < 32^2
    assert r["per_class"] == {"c1": pytest.approx(r["AP"])}
    # the good mask ranked first: precision 1 at recall 1/2 in the middle group
    r2 = mask_ap(gt, masks_to_results(1, np.stack([pa, pb]), [1, 1], [0.8, 0.9]))
    assert r2["AP75"] == pytest.approx(100 * 51 / 101)
    assert r2["AP"] == pytest.approx(100 * (3 + 4 * 51 / 101) / 10)


def test_per_class_and_box_ap(two):
    a, b, _ = two
    gt = _gt([(1, a), (2, b)], cats=(1, 2, 3))
    r = mask_ap(gt, masks_to_results(1, np.stack([a, _inside(b, 62)]), [1, 2], [1.0, 1.0]))
    assert r["per_class"]["c1"] == pytest.approx(100)
    assert r["per_class"]["c2"] == pytest.approx(100 * 3 / 10)  # hit only at t <= .60
    assert math.isnan(r["per_class"]["c3"]) and r["AP"] == pytest.approx(65)
    # boxes: the prediction's own bbox is scored, not its mask
    preds = masks_to_results(1, np.stack([a, b]), [1, 2], [1.0, 1.0], boxes=[[2, 2, 12, 12], [0, 0, 5, 5]])
    assert preds[0]["bbox"] == [2, 2, 10, 10]
    rb = mask_ap(gt, preds, iou_type="bbox")
    assert rb["per_class"]["c1"] == pytest.approx(100) and rb["per_class"]["c2"] == 0


def test_ground_truth_of_a_coco_file_scores_100(tmp_path):
    files = write_coco(tmp_path)
    ds = CocoInstances(files["json"], files["images"])
    preds = []
    for i in range(len(ds)):
        s = ds[i]
        preds += masks_to_results(s.image_id, s.masks, s.labels, torch.linspace(1, 0.5, len(s)))
    r = mask_ap(ds.coco, preds)
    assert all(r[k] == pytest.approx(100) for k in ("AP", "AP50", "AP75", "APs"))
    assert r["per_class"] == {"cat": pytest.approx(100), "dog": pytest.approx(100)}
    # a prediction on the crowd region is ignored, not a false positive
    crowd = rect_mask(10, 12, 0, 0, 12, 1)
    r2 = mask_ap(ds.coco, preds + masks_to_results(1, crowd[None], [9], [0.99]))
    assert r2["AP"] == pytest.approx(100)
    # dropping the polygon cat of image 1: cat recall 1/2 at precision 1 at every threshold
    r3 = mask_ap(ds.coco, [p for p in preds if not (p["image_id"] == 1 and p["category_id"] == 5
                                                      and p["score"] == 1.0)])
    assert r3["per_class"]["cat"] == pytest.approx(100 * 51 / 101) and r3["per_class"]["dog"] == pytest.approx(100)


def test_no_predictions_and_bad_predictions(two):
    a, _, gt = two
    r = mask_ap(gt, [])
    assert r["AP"] == 0 and r["per_class"] == {"c1": 0.0} and r["num_predictions"] == 0
    good = masks_to_results(1, a[None], [1], [1.0])[0]
    for bad, message in [
        ({**good, "image_id": 7}, r"predictions\[0\]: image_id 7 is not an image"),
        ({**good, "category_id": 4}, r"predictions\[0\]: unknown category_id 4"),
        ({**good, "score": float("nan")}, r"predictions\[0\]: score must be a finite"),
        ({k: v for k, v in good.items() if k != "score"}, r"predictions\[0\] has no 'score'"),
        ({**good, "segmentation": encode_masks(np.zeros((1, 5, 5), bool))[0]}, r"RLE size \[5, 5\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            mask_ap(gt, [bad])
    with pytest.raises(ValueError, match="iou_type"):
        mask_ap(gt, [good], iou_type="keypoints")
    with pytest.raises(TypeError, match="list"):
        mask_ap(gt, {"a": 1})
    before = dict(good)
    mask_ap(gt, [good])
    assert good == before  # loadRes writes into its dicts, never into the caller's


def test_uncompressed_rle_predictions_are_accepted(two):
    from ._files import uncompressed_rle

    a, b, gt = two
    preds = [{"image_id": 1, "category_id": 1, "score": 1.0, "segmentation": uncompressed_rle(m)} for m in (a, b)]
    assert mask_ap(gt, preds)["AP"] == pytest.approx(100)


def test_rle_helpers_round_trip_and_iou():
    from pycocotools import mask as mask_util

    rng = np.random.default_rng(0)
    masks = rng.random((3, 7, 9)) > 0.5
    rles = encode_masks(torch.from_numpy(masks))
    assert all(isinstance(r["counts"], str) and r["size"] == [7, 9] for r in rles)
    assert np.array_equal(np.stack([mask_util.decode(r) for r in rles]).astype(bool), masks)
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []
    res = masks_to_results(3, masks, [1, 2, 3], [0.1, 0.2, 0.3])
    assert [r["category_id"] for r in res] == [1, 2, 3] and res[2]["score"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="same length"):
        masks_to_results(3, masks, [1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="boolean"):
        encode_masks(np.full((1, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        encode_masks(np.zeros((2, 2), bool))
    # IoU against a brute-force count
    other = rng.random((3, 7, 9)) > 0.3
    ref = [np.logical_and(m, o).sum() / np.logical_or(m, o).sum() for m, o in zip(masks, other, strict=True)]
    assert instance_ious(masks, other).tolist() == pytest.approx(ref)
    assert mean_instance_iou(masks, other) == pytest.approx(np.mean(ref))
    assert instance_ious(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool)).tolist() == [1.0]
    assert math.isnan(mean_instance_iou(np.zeros((0, 2, 2), bool), np.zeros((0, 2, 2), bool)))
    with pytest.raises(ValueError, match="same shape"):
        instance_ious(masks, other[:2])


def test_markdown_and_json_safe(two):
    a, b, gt = two
    r = mask_ap(gt, masks_to_results(1, np.stack([a, b]), [1, 1], [1, 1]))
    text = ap_markdown(r)
    assert "| AP | AP50 | AP75 | APs | APm | APl |" in text and "| c1 | 100.000 |" in text
    assert "| 100.000 | 100.000 | 100.000 | 100.000 | nan | nan |" in text
    assert json_safe(r)["APm"] is None and json_safe({"x": [float("inf"), 1.0]}) == {"x": [None, 1.0]}
