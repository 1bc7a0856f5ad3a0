import json
import math

import numpy as np
import pytest
import torch

from clipapro.metrics import ConfusionMatrix, confusion_counts, metrics_from_counts


def brute_force(preds, gts, k, ignore=255):
    """Per-pixel loops: IoU/Acc per class, mIoU/mAcc over classes present, aAcc."""
    inter = [0] * k
    gt_area = [0] * k
    pred_area = [0] * k
    for p_img, g_img in zip(preds, gts, strict=True):
        for p, g in zip(np.ravel(p_img).tolist(), np.ravel(g_img).tolist(), strict=True):
            if g == ignore:
                continue
            gt_area[g] += 1
            if 0 <= p < k:
                pred_area[p] += 1
                inter[g] += int(p == g)
    iou = [inter[c] / (gt_area[c] + pred_area[c] - inter[c]) if gt_area[c] + pred_area[c] else math.nan
           for c in range(k)]
    acc = [inter[c] / gt_area[c] if gt_area[c] else math.nan for c in range(k)]
    present = [v for v in iou if not math.isnan(v)]
    present_acc = [v for v in acc if not math.isnan(v)]
    return {"iou": iou, "acc": acc, "miou": sum(present) / len(present),
            "macc": sum(present_acc) / len(present_acc), "aacc": sum(inter) / sum(gt_area)}


def _close(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, equal_nan=True)


def _random_case(rng, k=6, n=4):
    preds, gts = [], []
    for i in range(n):
        h, w = 5 + i, 7 - i
        g = rng.integers(0, k - 1, (h, w))  # class k-1 never in the ground truth
        g[rng.random((h, w)) < 0.2] = 255
        p = rng.integers(0, k, (h, w))
        p[rng.random((h, w)) < 0.05] = 255  # out-of-range prediction: counts as wrong
        preds.append(p)
        gts.append(g)
    return preds, gts


def test_equals_brute_force(rng):
    k = 7  # class 6 absent from both: excluded from the means
    preds, gts = _random_case(rng, k=k - 1)
    cm = ConfusionMatrix(k)
    for p, g in zip(preds, gts, strict=True):
        cm.update(torch.from_numpy(p), torch.from_numpy(g))
    got, want = cm.compute(), brute_force(preds, gts, k)
    _close(got.iou, want["iou"])
    _close(got.acc, want["acc"])
    _close([got.miou, got.macc, got.aacc], [want["miou"], want["macc"], want["aacc"]])
    assert math.isnan(got.iou[6]) and math.isnan(got.acc[5]) and not math.isnan(got.iou[5])
    assert got.pixels == sum(int((g != 255).sum()) for g in gts)


def test_numpy_batch_and_sequential_agree(rng):
    preds, gts = _random_case(rng)
    preds = [p[:4, :3] for p in preds]
    gts = [g[:4, :3] for g in gts]
    a, b = ConfusionMatrix(6), ConfusionMatrix(6)
    for p, g in zip(preds, gts, strict=True):
        a.update(p.astype(np.uint8), g.astype(np.int32))
    b.update(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(gts)))
    assert torch.equal(a.counts, b.counts)
    assert torch.equal(a.matrix, a.counts[:, :6])


def test_ignore_never_counts(rng):
    preds, gts = _random_case(rng)
    cm1, cm2 = ConfusionMatrix(6), ConfusionMatrix(6)
    for p, g in zip(preds, gts, strict=True):
        cm1.update(p, g)
        p2 = p.copy()
        p2[g == 255] = rng.integers(0, 300, int((g == 255).sum()))  # anything where the GT is ignored
        cm2.update(p2, g)
    assert torch.equal(cm1.counts, cm2.counts)
    all_ignored = ConfusionMatrix(3)
    all_ignored.update(np.zeros((2, 2), int), np.full((2, 2), 255))
    m = all_ignored.compute()
    assert all(math.isnan(v) for v in m.iou) and math.isnan(m.miou) and m.pixels == 0


def test_known_values_and_reports():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [1, 255]]))
    m = cm.compute()
    assert m.iou == [1.0, 0.5, 0.0] and m.acc[:2] == [1.0, 0.5] and math.isnan(m.acc[2])
    assert m.miou == pytest.approx(0.5) and m.aacc == pytest.approx(2 / 3) and m.macc == pytest.approx(0.75)
    m.class_names = ("bg", "cat", "dog")
    d = m.as_dict()
    assert d["mIoU"] == 50.0 and d["aAcc"] == 66.67 and d["IoU"] == {"bg": 100.0, "cat": 50.0, "dog": 0.0}
    assert d["Acc"]["dog"] is None
    json.dumps(d)  # NaN became null: valid JSON
    csv_lines = m.to_csv().splitlines()
    assert csv_lines[0] == "class,IoU,Acc" and csv_lines[3] == "dog,0.00,"
    assert csv_lines[4] == "mean,50.00,75.00"
    md = m.to_markdown(title="t")
    assert "| cat | 50.00 | 50.00 |" in md and "**mIoU 50.00**" in md


def test_reset_and_compute_is_pure():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([0, 0]))
    before = cm.counts.clone()
    cm.compute()
    cm.compute()
    assert torch.equal(cm.counts, before)
    cm.reset()
    assert int(cm.counts.sum()) == 0 and cm.num_updates == 0


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(TypeError, match="pred must hold integer labels"):
        cm.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pred shape \(2, 3\) differs from target shape \(2, 2\)"):
        cm.update(np.zeros((2, 3), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"target holds labels \[3, 7\] outside 0..2"):
        cm.update(np.zeros(4, int), np.array([0, 3, 7, 255]))
    with pytest.raises(ValueError, match="ignore_index 1 is a class index"):
        ConfusionMatrix(3, ignore_index=1)
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match=r"counts must have shape \(3, 4\)"):
        cm.add_counts(torch.zeros(3, 3))


def test_functional_matches_module(rng):
    preds, gts = _random_case(rng)
    total = sum(confusion_counts(p, g, 6) for p, g in zip(preds, gts, strict=True))
    cm = ConfusionMatrix(6)
    for p, g in zip(preds, gts, strict=True):
        cm.update(p, g)
    assert torch.equal(total, cm.counts)
    assert metrics_from_counts(total).miou == cm.compute().miou


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(rng):
    preds, gts = _random_case(rng)
    a, b = ConfusionMatrix(6), ConfusionMatrix(6, device="cuda")
    for p, g in zip(preds, gts, strict=True):
        a.update(p, g)
        b.update(torch.from_numpy(p).cuda(), torch.from_numpy(g).cuda())
    assert b.counts.device.type == "cuda"
    assert torch.equal(a.counts, b.counts.cpu())
