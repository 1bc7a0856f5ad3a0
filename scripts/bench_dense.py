"""Benchmark CLIP dense prediction (``clipapro.clip.predict_probs``): images per second.

A ViT-B/16-shaped open_clip model with random weights (speed does not depend on the weights), the
VOC-21 class set (59 prompt names with the background stuff words). Cases:

* ``whole-448``: one pass on a 448x448 image (785 tokens);
* ``slide-1024``: 1024x1024 image, sliding window crop 224 / stride 112 (81 windows);
* ``proto-336``: 500x375 image, short side resized to 336, crop 224 / stride 112 (the
  SCLIP/ClearCLIP/NACLIP protocol).

Prints a table and a JSON line (``--json`` also writes it). Medians over ``--repeats`` timed runs
after one warm-up run.

    python scripts/bench_dense.py --device cpu --threads 2 --modes maskclip,naclip
    python scripts/bench_dense.py --device cuda --precision fp16 --batch 8
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
    sys.path.insert(0, str(_CHECKOUT))

from clipapro.clip import build_text_classifier, create_model, predict_probs  # noqa: E402

CASES = {
    "whole-448": {"size": (448, 448), "kw": {}},
    "slide-1024": {"size": (1024, 1024), "kw": {"slide_crop": 224, "slide_stride": 112}},
    "proto-336": {"size": (375, 500), "kw": {"short_side": 336, "slide_crop": 224, "slide_stride": 112}},
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_case(model, clf, case: str, mode: str, *, batch: int, repeats: int, device: str, crop_batch: int):
    h, w = CASES[case]["size"]
    images = torch.rand(batch, 3, h, w, device=device)
    kw = dict(CASES[case]["kw"], dense_mode=mode, crop_batch=crop_batch)
    times = []
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        probs = predict_probs(model, images, clf, **kw)
        _sync(device)
        if i:  # the first run warms up kernels and allocators
            times.append(time.perf_counter() - t0)
    assert probs.shape == (batch, clf.num_classes, h, w)
    med = statistics.median(times)
    return {"case": case, "mode": mode, "size": f"{h}x{w}", "batch": batch, "median_s": round(med, 4),
            "images_per_s": round(batch / med, 3), "options": CASES[case]["kw"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="model precision")
    p.add_argument("--modes", default="maskclip,naclip", help="comma list of dense modes")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list of {list(CASES)}")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--crop-batch", type=int, default=8, help="sliding windows per forward pass")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 3 on CPU, 10 on GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--model", default="ViT-B-16", help="open_clip model name (random weights)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (10 if device.startswith("cuda") else 3)
    model = create_model(args.model, random_init=True, device=device, precision=args.precision)
    clf = build_text_classifier(model, "voc21", templates="single")
    on_gpu = device.startswith("cuda")
    config = {"model": args.model, "weights": "random", "device": device,
              "device_name": torch.cuda.get_device_name() if on_gpu else platform.processor(),
              "precision": args.precision, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "classes": "voc21 (21 classes, 59 prompt names)", "repeats": repeats,
              "crop_batch": args.crop_batch}
    print("config: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    rows = []
    for case in args.cases.split(","):
        for mode in args.modes.split(","):
            rows.append(bench_case(model, clf, case, mode, batch=args.batch, repeats=repeats, device=device,
                                   crop_batch=args.crop_batch))
            r = rows[-1]
            print(f"  {r['case']:<11} {r['mode']:<9} {r['size']:>9}  batch {r['batch']:>2}  "
                  f"{r['median_s']:>8.3f} s  {r['images_per_s']:>8.2f} img/s", flush=True)
    result = {"config": config, "results": rows}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
