"""The readers and the evaluator on real VOC photos and masks (../shared/data/voc_samples)."""

import os

import numpy as np

from clipapro.data import FolderDataset
from clipapro.metrics import ConfusionMatrix, evaluate_pipeline


def test_real_voc_masks(shared_data):
    ds = FolderDataset(os.path.join(shared_data, "voc_samples"), classes="voc21")
    assert len(ds) == 5
    classes = set()
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (513, 513, 3) and item["mask"].shape == (513, 513)
        values = set(np.unique(item["mask"]).tolist())
        assert 255 in values and values <= set(range(21)) | {255}  # palette indices, not colours
        classes |= values - {0, 255}
    assert {ds.classes[c] for c in classes} == {"aeroplane", "horse", "sheep"}
    # ground truth as prediction scores 100 on the classes present; the void border never counts
    gt_pred = evaluate_pipeline(lambda img: ds[_index(ds, img)]["mask"].clip(0, 20), ds, progress=False)
    assert gt_pred.miou == 1.0 and gt_pred.aacc == 1.0
    cm = ConfusionMatrix(21)
    cm.update(np.zeros((513, 513), np.int64), ds[0]["mask"])
    assert cm.compute().iou[0] < 1.0 and cm.compute().pixels == int((ds[0]["mask"] != 255).sum())


def _index(ds, image):
    for i in range(len(ds)):
        if np.array_equal(ds[i]["image"], image):
            return i
    raise AssertionError("image not found")
