"""Benchmark: pseudo-labelling throughput on CPU, and where the time goes (CLIP vs refinement).

Runs the real pipeline (:func:`clipapro.pseudo.labels.generate_pseudo_labels`: CLIP dense
probabilities -> upsample -> refine -> label PNG) with a ViT-B/16-shaped CLIP with random weights
(no download; the cost of a forward pass does not depend on the weights) on 512x512 images, once per
refiner. Images: the five VOC photos of ../shared/data resized to 512x512 (random images when that
folder is absent), classes voc21 (K = 21). Text embeddings are built once, outside the timing.

    .venv/bin/python scripts/bench_pseudo.py --threads 2 --refiners none,apro,auto

Prints a table and a JSON line. Timings on a shared machine are noisy: compare rows of one run.
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
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "voc_samples" / "images"


def make_images(folder: Path, size: int, count: int) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    photos = sorted(SHARED.glob("*.png")) if SHARED.is_dir() else []
    rng = np.random.default_rng(0)
    for i in range(count):
        if photos:
            img = Image.open(photos[i % len(photos)]).convert("RGB").resize((size, size), Image.BILINEAR)
        else:
            img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        img.save(folder / "images" / f"im{i:03d}.png")
        Image.fromarray(np.zeros((size, size), np.uint8), mode="L").save(folder / "masks" / f"im{i:03d}.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side")
    ap.add_argument("--images", type=int, default=5, help="images per refiner")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--model", default="ViT-B-16", help="open_clip architecture (random weights)")
    ap.add_argument("--refiners", default="none,apro,auto", help="comma list of refiners to time")
    ap.add_argument("--clip-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="predict_probs option, e.g. slide_crop=224 (repeatable)")
    args = ap.parse_args(argv)
    if (ROOT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
        sys.path.insert(0, str(ROOT))
    from clipapro.commands._common import parse_options
    from clipapro.data import build_dataset
    from clipapro.pseudo.labels import generate_pseudo_labels
    from clipapro.pseudo.pipeline import clip_predictor
    from clipapro.refiners import DEFAULT_METHOD, make_refiner

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_images(tmp / "data", args.size, args.images)
        ds = build_dataset("folder", tmp / "data", classes="voc21")
        t = time.perf_counter()
        predict = clip_predictor(model=args.model, pretrained=None, backend="open_clip", precision="fp32",
                                 device="cpu", class_set=ds.class_set, templates="single",
                                 model_options={"random_init": True},
                                 predict_options=parse_options(args.clip_opt, "--clip-opt"))
        setup_s = time.perf_counter() - t
        predict(torch.rand(1, 3, 64, 64))  # warm-up (allocator, lazy inits)
        for name in args.refiners.split(","):
            refine = make_refiner(name)
            stats = generate_pseudo_labels(ds, predict, refine, tmp / f"out_{name}", progress=False)
            n = stats["done"]
            total = stats["seconds"]
            other = total - stats["predict_s"] - stats["refine_s"]
            rows.append({
                "refiner": name + (f" ({DEFAULT_METHOD})" if name == "auto" else ""), "images": n,
                "images_per_s": n / total, "s_per_image": total / n,
                "clip_s_per_image": stats["predict_s"] / n, "refine_s_per_image": stats["refine_s"] / n,
                "clip_share": stats["predict_s"] / total, "refine_share": stats["refine_s"] / total,
                "io_share": other / total,
            })
    print(f"pseudo-labelling, {args.model} (random weights), {args.size}x{args.size}, K=21, "
          f"{args.threads} CPU threads, torch {torch.__version__}; model + text setup {setup_s:.1f} s")
    print(f"{'refiner':<20} {'img/s':>7} {'s/img':>7} {'CLIP s':>7} {'refine s':>8} "
          f"{'CLIP':>6} {'refine':>7} {'I/O':>6}")
    for r in rows:
        print(f"{r['refiner']:<20} {r['images_per_s']:7.3f} {r['s_per_image']:7.2f} "
              f"{r['clip_s_per_image']:7.2f} {r['refine_s_per_image']:8.2f} "
              f"{100 * r['clip_share']:5.1f}% {100 * r['refine_share']:6.1f}% {100 * r['io_share']:5.1f}%")
    print(json.dumps({"bench": "pseudo", "model": args.model, "size": args.size, "threads": args.threads,
                      "median_s_per_image": statistics.median(r["s_per_image"] for r in rows), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
