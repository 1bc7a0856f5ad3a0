"""Two gloo processes (torch.multiprocessing spawn) give exactly the single-process numbers."""

import json
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from clipapro.metrics import ConfusionMatrix, evaluate_predictions

K = 4


def _write_folder(root, rng, n=5):
    """images/ + masks/ + preds/ for n samples of varied sizes; returns the root."""
    for d in ("images", "masks", "preds"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for i in range(n):
        h, w = 4 + i, 6 - (i % 3)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(f"{root}/images/s{i}.png")
        gt = rng.integers(0, K, (h, w))
        gt[rng.random((h, w)) < 0.2] = 255
        Image.fromarray(gt.astype(np.uint8), mode="L").save(f"{root}/masks/s{i}.png")
        pred = np.where(rng.random((h, w)) < 0.6, np.minimum(gt, K - 1), rng.integers(0, K, (h, w)))
        Image.fromarray(pred.astype(np.uint8), mode="L").save(f"{root}/preds/s{i}.png")
    return root


def _worker(rank, world, init_file, root, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from clipapro.data import FolderDataset

        ds = FolderDataset(root, classes="a, b, c, d")
        metrics = evaluate_predictions(ds, f"{root}/preds", progress=False)  # shards by rank itself
        cm = ConfusionMatrix(K, class_names=ds.classes)
        for i in range(rank, len(ds), world):
            pred = np.asarray(Image.open(f"{root}/preds/{ds.ids[i]}.png"), dtype=np.int64)
            cm.update(pred, ds[i]["mask"])
        local = int(cm.counts.sum())
        merged = cm.compute()
        if rank == 0:
            with open(out_file, "w") as f:
                json.dump({"eval": metrics.as_dict(digits=10), "cm": merged.as_dict(digits=10),
                           "local_pixels": local, "skipped": metrics.skipped}, f)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_single(tmp_path, rng):
    root = _write_folder(str(tmp_path / "data"), rng)
    out = tmp_path / "out.json"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), root, str(out)), nprocs=2, join=True)
    got = json.loads(out.read_text())

    from clipapro.data import FolderDataset

    single = evaluate_predictions(FolderDataset(root, classes="a, b, c, d"), f"{root}/preds",
                                  progress=False, shard=(0, 1)).as_dict(digits=10)
    assert got["eval"] == single
    assert got["cm"]["IoU"] == single["IoU"] and got["cm"]["mIoU"] == single["mIoU"]
    assert got["eval"]["num_images"] == 5
    assert 0 < got["local_pixels"] < single["pixels"]  # rank 0 alone saw only part of the data
