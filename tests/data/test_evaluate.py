import json
import math

import numpy as np
import pytest
import torch

from clipapro.cli import main
from clipapro.data import VOCDataset
from clipapro.metrics import evaluate_pipeline, evaluate_predictions

from ..metrics.test_confusion import brute_force
from .conftest import save_index_png


@pytest.fixture
def voc_with_preds(voc_root, tmp_path, rng):
    root, masks = voc_root
    preds = {}
    for sid, gt in masks.items():
        p = np.where(rng.random(gt.shape) < 0.5, np.where(gt == 255, 0, gt), rng.integers(0, 21, gt.shape))
        preds[sid] = p
        save_index_png(tmp_path / "preds" / f"{sid}.png", p, palette=True)
    return root, masks, preds, tmp_path / "preds"


@pytest.mark.parametrize("workers", [0, 2])
def test_predictions_equal_brute_force(voc_with_preds, workers):
    root, masks, preds, pred_dir = voc_with_preds
    m = evaluate_predictions(VOCDataset(root, split="val"), pred_dir, num_workers=workers, progress=False)
    want = brute_force(list(preds.values()), list(masks.values()), 21)
    np.testing.assert_allclose(m.iou, want["iou"], rtol=1e-12, equal_nan=True)
    assert m.miou == pytest.approx(want["miou"]) and m.aacc == pytest.approx(want["aacc"])
    assert m.macc == pytest.approx(want["macc"]) and m.num_images == 3 and m.skipped == []
    assert m.class_names[0] == "background"


def test_pipeline_equals_saved_predictions_and_resumes(voc_with_preds, tmp_path):
    root, masks, preds, pred_dir = voc_with_preds
    ds = VOCDataset(root, split="val")
    calls = []

    def predict(image):
        assert image.dtype == np.uint8 and image.ndim == 3
        i = len(calls)
        calls.append(i)
        return torch.from_numpy(list(preds.values())[i])

    # the DataLoader keeps order, so the i-th call is the i-th sample
    m = evaluate_pipeline(predict, ds, num_workers=0, progress=False, save_dir=tmp_path / "saved")
    ref = evaluate_predictions(ds, pred_dir, progress=False)
    assert m.as_dict() == ref.as_dict() and len(calls) == 3
    again = evaluate_pipeline(predict, ds, progress=False, save_dir=tmp_path / "saved")  # all cached
    assert len(calls) == 3 and again.as_dict() == ref.as_dict()


def test_pipeline_bad_prediction_shape(voc_root):
    ds = VOCDataset(voc_root[0], split="val")
    with pytest.raises(ValueError, match=r"prediction for sample 2007_000000 has shape \(2, 2\)"):
        evaluate_pipeline(lambda img: np.zeros((2, 2), np.int64), ds, progress=False)
    with pytest.raises(TypeError, match="predict must be callable"):
        evaluate_pipeline(None, ds)


def test_corrupt_samples_raise_or_skip(voc_with_preds):
    root, masks, preds, pred_dir = voc_with_preds
    ds = VOCDataset(root, split="val")
    (pred_dir / "2007_000001.png").unlink()
    (pred_dir / "2007_000002.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"prediction file not found: .*2007_000001\.png.*--skip-corrupt"):
        evaluate_predictions(ds, pred_dir, progress=False, num_workers=1)
    with pytest.warns(UserWarning) as record:
        m = evaluate_predictions(ds, pred_dir, progress=False, skip_corrupt=True)
    assert "skipping sample 2007_000002: cannot read prediction" in str(record[-1].message)
    assert m.skipped == ["2007_000001", "2007_000002"] and m.num_images == 1
    want = brute_force([preds["2007_000000"]], [masks["2007_000000"]], 21)
    assert m.miou == pytest.approx(want["miou"])
    ds.samples[0].image.write_bytes(b"broken")  # a live pipeline reads images: same policy
    with pytest.raises(ValueError, match=r"cannot read image .*2007_000000\.jpg"):
        evaluate_pipeline(lambda im: np.zeros(im.shape[:2], np.int64), ds, progress=False)
    with pytest.warns(UserWarning):
        m2 = evaluate_pipeline(lambda im: np.zeros(im.shape[:2], np.int64), ds, progress=False,
                               skip_corrupt=True)
    assert m2.skipped == ["2007_000000"] and m2.num_images == 2


def test_prediction_size_mismatch(voc_with_preds):
    root, _, _, pred_dir = voc_with_preds
    save_index_png(pred_dir / "2007_000000.png", np.zeros((2, 2)), palette=True)
    with pytest.raises(ValueError, match=r"2007_000000\.png is 2x2 \(WxH\) but its label map is 7x5"):
        evaluate_predictions(VOCDataset(root, split="val"), pred_dir, progress=False)


def test_cli_evaluate(voc_with_preds, tmp_path, capsys):
    root, masks, preds, pred_dir = voc_with_preds
    out = tmp_path / "m" / "metrics.json"
    code = main(["evaluate", "--dataset", "voc21", "--root", str(root), "--split", "val", "--pred-dir",
                 str(pred_dir), "--out", str(out), "--csv", str(tmp_path / "m.csv"), "--workers", "0"])
    assert code == 0
    res = json.loads(out.read_text())
    want = brute_force(list(preds.values()), list(masks.values()), 21)
    assert res["mIoU"] == round(100 * want["miou"], 2) and res["num_images"] == 3
    assert set(res["IoU"]) == set(VOCDataset(root).classes) and res["dataset"] == "voc21"
    absent = [c for c, v in zip(res["IoU"], want["iou"], strict=True) if math.isnan(v)]
    assert all(res["IoU"][c] is None for c in absent)
    assert "| aeroplane |" in capsys.readouterr().out
    assert (tmp_path / "m.csv").read_text().startswith("class,IoU,Acc\nbackground,")


def test_cli_usage_errors(voc_with_preds, capsys):
    root, _, _, pred_dir = voc_with_preds
    base = ["evaluate", "--pred-dir", str(pred_dir), "--quiet"]
    assert main([*base, "--dataset", "voc99", "--root", str(root)]) == 2
    assert "unknown dataset 'voc99'" in capsys.readouterr().err
    assert main([*base, "--dataset", "voc21"]) == 2
    assert main([*base, "--dataset", "folder", "--root", str(root)]) == 2
    assert "--classes is required" in capsys.readouterr().err
    assert main([*base, "--dataset", "voc21", "--root", str(root), "--split", "test"]) == 2  # missing input
    assert "split file not found" in capsys.readouterr().err


def test_all_samples_skipped_is_an_error_not_empty_metrics(voc_with_preds, tmp_path, capsys):
    root, _, _, pred_dir = voc_with_preds
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(UserWarning, match="skipping sample"), pytest.raises(ValueError, match="all 3 were skipped"):
        evaluate_predictions(VOCDataset(root, split="val"), empty, skip_corrupt=True, progress=False)
    with pytest.warns(UserWarning, match="skipping sample"):
        code = main(["evaluate", "--dataset", "voc21", "--root", str(root), "--pred-dir", str(empty),
                     "--skip-corrupt", "--quiet", "--out", str(tmp_path / "m.json")])
    assert code == 1 and "no sample could be scored" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_predictions_outside_the_classes_are_counted_and_warned(voc_root):
    ds = VOCDataset(voc_root[0], split="val")
    with pytest.warns(UserWarning, match=r"\d+ labelled pixels were predicted with class ids outside 0..20"):
        m = evaluate_pipeline(lambda img: np.full(img.shape[:2], 30, np.int64), ds, progress=False)
    assert m.aacc == 0.0
