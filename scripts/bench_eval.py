"""Benchmark of ``clipapro evaluate``'s core: images/s scoring VOC-sized PNG predictions (500x375).

Writes a synthetic VOC2012 layout (palette PNG ground truth with blocky regions and a 255 border,
21 classes, plus prediction PNGs that agree on ~70% of pixels) to a temporary folder, then times
``evaluate_predictions`` with 0, 1, 2, 4 DataLoader workers (0 = everything in the main process,
the baseline). Each row is the median of ``--repeats`` runs; the speed-up is baseline / row,
measured in the same process. A second table times ``ConfusionMatrix.update`` alone (bincount) on
in-memory arrays, CPU and (when present) CUDA. Prints a table and JSON.

Usage:
  python scripts/bench_eval.py                   # 200 images, workers 0 1 2 4, 3 repeats
  python scripts/bench_eval.py --images 50 --workers 0 2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
    sys.path.insert(0, str(_CHECKOUT))

from clipapro.data import VOCDataset  # noqa: E402
from clipapro.io import save_label_png  # noqa: E402
from clipapro.metrics import ConfusionMatrix, evaluate_predictions  # noqa: E402

H, W, K = 375, 500, 21


def synthetic_mask(rng) -> np.ndarray:
    """Blocky regions (like real masks, so PNG sizes are realistic) with a 255 border around them."""
    coarse = rng.integers(0, K, (H // 25 + 1, W // 25 + 1))
    coarse[rng.random(coarse.shape) < 0.5] = 0  # mostly background, as in VOC
    mask = np.kron(coarse, np.ones((25, 25), np.int64))[:H, :W]
    edge = np.zeros_like(mask, bool)
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    mask[edge] = 255
    return mask


def write_layout(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    base = root / "VOC2012"
    (base / "JPEGImages").mkdir(parents=True)  # images are not read when scoring saved predictions
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    ids = [f"2007_{i:06d}" for i in range(n)]
    for sid in ids:
        gt = synthetic_mask(rng)
        save_label_png(base / "SegmentationClass" / f"{sid}.png", gt)
        pred = np.where(rng.random((H, W)) < 0.7, np.where(gt == 255, 0, gt), rng.integers(0, K, (H, W)))
        save_label_png(root / "preds" / f"{sid}.png", pred)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return base, root / "preds"


def time_it(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_update(n: int, repeats: int, device: str) -> float:
    rng = np.random.default_rng(1)
    gts = [torch.from_numpy(synthetic_mask(rng)).to(device) for _ in range(n)]
    preds = [torch.randint(0, K, (H, W), device=device) for _ in range(n)]

    def run():
        cm = ConfusionMatrix(K)
        for p, g in zip(preds, gts, strict=True):
            cm.update(p, g)
        cm.counts.sum().item()  # synchronise CUDA

    run()  # warm-up
    return n / time_it(run, repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="images/s of PNG-prediction evaluation",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--images", type=int, default=200, help="synthetic samples to write and score")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4], help="DataLoader worker counts")
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting (median reported)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows, result = [], {"images": args.images, "size": [H, W], "classes": K, "evaluate": [], "update": []}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        base, preds = write_layout(Path(tmp), args.images)
        print(f"wrote {args.images} GT + prediction PNGs: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        ds = VOCDataset(base, split="val")
        ref = None
        for w in args.workers:
            fn = lambda w=w: evaluate_predictions(ds, preds, num_workers=w, progress=False)  # noqa: E731
            miou = fn().miou
            ref = miou if ref is None else ref
            assert miou == ref, "worker count changed the result"
            sec = time_it(fn, args.repeats)
            rows.append((w, args.images / sec))
            result["evaluate"].append({"workers": w, "images_per_s": round(args.images / sec, 1)})
    base_ips = rows[0][1]
    print(f"\nevaluate_predictions, {args.images} images {W}x{H}, K={K} (median of {args.repeats})")
    print(f"{'workers':>8} {'images/s':>10} {'speed-up':>9}")
    for w, ips in rows:
        print(f"{w:>8} {ips:>10.1f} {ips / base_ips:>8.2f}x")
    print(f"\nConfusionMatrix.update alone ({W}x{H} label maps in memory)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        ips = bench_update(min(args.images, 50), args.repeats, dev)
        result["update"].append({"device": dev, "images_per_s": round(ips, 1)})
        print(f"{dev:>8} {ips:>10.1f} images/s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
