import json

import numpy as np
import pytest

from clipapro.data import VOCDataset
from clipapro.metrics import evaluate_predictions

from .conftest import save_index_png

TINY_VIT = {"embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_evaluate_live_writes_reports(voc_root, tmp_path):
    from eval.live import evaluate_live

    root, masks = voc_root
    out = tmp_path / "r" / "live.json"
    m = evaluate_live(lambda img: np.full(img.shape[:2], 1, np.int64), dataset="voc21", root=root,
                      num_workers=0, limit=2, out=out, extra={"model": "constant"}, progress=False)
    assert m.num_images == 2
    res = json.loads(out.read_text())
    assert res["model"] == "constant" and res["dataset"] == "voc21" and res["split"] == "val"
    assert res["mIoU"] == m.as_dict()["mIoU"]
    assert out.with_suffix(".csv").read_text().startswith("class,IoU,Acc")
    assert "| aeroplane |" in out.with_suffix(".md").read_text()
    # equals scoring the same constant maps saved as PNGs
    for sid, gt in list(masks.items())[:2]:
        save_index_png(tmp_path / "p" / f"{sid}.png", np.ones_like(gt), palette=True)
    ds = VOCDataset(root, split="val")
    ds.samples = ds.samples[:2]
    assert evaluate_predictions(ds, tmp_path / "p", progress=False).as_dict() == m.as_dict()


@pytest.mark.parametrize("refine", [None, "apro"])
def test_run_clip_pipeline_random_tiny_model(voc_root, tmp_path, refine):
    pytest.importorskip("open_clip")
    from eval.run_clip_pipeline import main

    root, _ = voc_root
    cfg = tmp_path / "tiny-vit.json"
    cfg.write_text(json.dumps(TINY_VIT))
    out = tmp_path / "clip.json"
    argv = ["--dataset", "voc21", "--root", str(root), "--model", str(cfg), "--random-init",
            "--templates", "single", "--short-side", "32", "--slide-crop", "0", "--workers", "0",
            "--out", str(out), "--save-dir", str(tmp_path / "preds"), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv + (["--refine", refine] if refine else [])) == 0
    res = json.loads(out.read_text())
    assert res["num_images"] == 3 and res["random_init"] is True and res["slide_crop"] is None
    assert len(list((tmp_path / "preds").glob("*.png"))) == 3
    assert 0.0 <= res["mIoU"] <= 100.0
