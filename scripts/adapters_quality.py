"""Box -> mask and scribble -> mask on the real VOC photos: clipapro vs trivial answers vs classic tools.

Boxes: the tight box of each connected component (>= --min-area pixels) of each object class in the
ground truth; each box carries its component's class. A method's instance masks are painted largest box
first (so smaller boxes win overlaps) into a class map. Methods: ``filled box`` (trivial), ``GrabCut``
(OpenCV, rect init, 5 iterations), ``clipapro`` (:func:`clipapro.adapters.box_to_probs`).

Scribbles: synthesised from the ground truth with a seeded RNG: every connected region (>= --min-area
pixels) of every class INCLUDING background gets one stroke: the skeleton of the region eroded by 4 %
of its size, cut to the part within 0.35 x sqrt(area) of a random skeleton point, 3 pixels wide.
A second, dense protocol (``rows``): every 40th row of every region eroded by 6 pixels (where the
trivial answer is already strong). Methods: ``nearest seed`` (trivial: Euclidean nearest scribble
pixel), ``random_walker`` (skimage, beta=130, mode bf: direct solve), ``clipapro``
(:func:`clipapro.adapters.scribble_to_probs`).

mIoU: confusion accumulated over all photos (255 = void ignored), mean over the classes present in the
ground truth. Time: median seconds per photo (single thread). Benchmark-only deps: opencv, scikit-image,
scipy. Run::

    .venv/bin/python scripts/adapters_quality.py --seeds 3 --json adapters_quality.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
    sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "voc_samples"


def load_samples(data: Path):
    out = []
    for p in sorted((data / "images").glob("*.png")):
        img = np.asarray(Image.open(p).convert("RGB"))
        gt = np.asarray(Image.open(data / "masks" / p.name)).astype(np.int64)
        out.append((p.stem, img, gt))
    return out


def gt_boxes(gt: np.ndarray, min_area: int):
    from scipy import ndimage

    boxes, classes = [], []
    for c in np.unique(gt):
        if c in (0, 255):
            continue
        comp, n = ndimage.label(gt == c)
        for i in range(1, n + 1):
            ys, xs = np.nonzero(comp == i)
            if ys.size >= min_area:
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                classes.append(int(c))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), classes


def synth_scribbles(gt: np.ndarray, rng, min_area: int) -> np.ndarray:
    from scipy import ndimage
    from skimage.morphology import skeletonize

    out = np.full(gt.shape, 255, np.int64)
    for c in np.unique(gt):
        if c == 255:
            continue
        comp, n = ndimage.label(gt == c)
        for i in range(1, n + 1):
            region = comp == i
            area = int(region.sum())
            if area < min_area:
                continue
            r = max(1, int(0.04 * np.sqrt(area)))
            eroded = ndimage.binary_erosion(region, iterations=r)
            skel = skeletonize(eroded if eroded.any() else region)
            ys, xs = np.nonzero(skel)
            if ys.size == 0:
                continue
            k = rng.integers(ys.size)
            keep = (ys - ys[k]) ** 2 + (xs - xs[k]) ** 2 <= (0.35 ** 2) * area
            stroke = np.zeros_like(region)
            stroke[ys[keep], xs[keep]] = True
            stroke = ndimage.binary_dilation(stroke) & region
            out[stroke] = c
    return out


def row_scribbles(gt: np.ndarray, step: int = 40, margin: int = 6) -> np.ndarray:
    """Dense scribbles: every ``step``-th row, inside each class region eroded by ``margin`` pixels."""
    from scipy import ndimage

    out = np.full(gt.shape, 255, np.int64)
    rows = np.zeros(gt.shape, bool)
    rows[::step] = True
    for c in np.unique(gt):
        if c != 255:
            out[rows & ndimage.binary_erosion(gt == c, iterations=margin)] = c
    return out


def paint(masks, classes, boxes, shape):
    pred = np.zeros(shape, np.int64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-area):
        pred[masks[i]] = classes[i]
    return pred


def filled_boxes(img, boxes):
    h, w = img.shape[:2]
    out = np.zeros((len(boxes), h, w), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        out[i, y0:y1, x0:x1] = True
    return out


def grabcut(img, boxes):
    import cv2

    cv2.setNumThreads(1)
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    out = []
    for x0, y0, x1, y1 in boxes.astype(int):
        mask = np.zeros(img.shape[:2], np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        rect = (int(x0), int(y0), int(max(1, x1 - x0)), int(max(1, y1 - y0)))
        cv2.grabCut(bgr, mask, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
        out.append((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
    return np.stack(out)


def ours_boxes(img, boxes, opts):
    from clipapro.adapters import box_to_probs

    t = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    return (box_to_probs(t, torch.from_numpy(boxes), **opts) > 0.5).numpy()


def nearest_seed(img, scr):
    from scipy import ndimage

    _, (iy, ix) = ndimage.distance_transform_edt(scr == 255, return_indices=True)
    return scr[iy, ix]


def random_walker(img, scr):
    from skimage.segmentation import random_walker as rw

    classes = np.unique(scr[scr != 255])
    markers = np.zeros(scr.shape, np.int64)
    for k, c in enumerate(classes):
        markers[scr == c] = k + 1
    lab = rw(img.astype(np.float64) / 255, markers, beta=130, mode="bf", channel_axis=-1)
    return classes[lab - 1]


def ours_scribbles(img, scr, opts):
    from clipapro.adapters import scribble_to_mask

    t = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    return scribble_to_mask(t, torch.from_numpy(scr), **opts).numpy()


def confusion(pred, gt, n=256):
    valid = gt != 255
    return np.bincount(gt[valid] * n + pred[valid], minlength=n * n).reshape(n, n)


def miou(conf, classes):
    ious = []
    for c in classes:
        inter = conf[c, c]
        union = conf[c, :].sum() + conf[:, c].sum() - inter
        ious.append(inter / union if union else 1.0)
    return float(np.mean(ious)), {int(c): float(i) for c, i in zip(classes, ious, strict=True)}


def run(samples, methods, make_pred):
    res = {}
    present = sorted({int(c) for _, _, gt in samples for c in np.unique(gt) if c != 255})
    for name, fn in methods.items():
        conf, times = np.zeros((256, 256), np.int64), []
        for key, img, gt in samples:
            t0 = time.perf_counter()
            pred = make_pred(fn, key, img, gt)
            times.append(time.perf_counter() - t0)
            conf += confusion(pred, gt)
        m, per = miou(conf, present)
        res[name] = {"miou": m, "per_class": per, "median_s": statistics.median(times)}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="voc_samples folder (images/, masks/)")
    ap.add_argument("--seeds", type=int, default=3, help="scribble synthesis seeds")
    ap.add_argument("--min-area", type=int, default=100, help="smallest GT component given a box/stroke")
    ap.add_argument("--skip", nargs="*", default=[], help="methods to skip (e.g. random_walker)")
    ap.add_argument("--box-opts", type=json.loads, default={}, help="JSON options for box_to_probs")
    ap.add_argument("--scribble-opts", type=json.loads, default={}, help="JSON options for scribble_to_probs")
    ap.add_argument("--only", choices=["boxes", "scribbles"], help="run one part only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    samples = load_samples(args.data)
    if not samples:
        raise SystemExit(f"no photos in {args.data}")
    result = {"photos": [k for k, _, _ in samples]}
    if args.only != "scribbles":
        boxes = {k: gt_boxes(gt, args.min_area) for k, _, gt in samples}
        methods = {"filled box": filled_boxes, "GrabCut (cv2)": grabcut,
                   "clipapro box2mask": lambda img, b: ours_boxes(img, b, args.box_opts)}
        methods = {k: v for k, v in methods.items() if k.split()[0] not in args.skip}

        def box_pred(fn, key, img, gt):
            b, cls = boxes[key]
            return paint(fn(img, b), cls, b, gt.shape)

        result["boxes"] = run(samples, methods, box_pred)
        result["n_boxes"] = sum(len(v[1]) for v in boxes.values())
    if args.only != "boxes":
        per_seed = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            scr = {k: synth_scribbles(gt, rng, args.min_area) for k, _, gt in samples}
            methods = {"nearest seed": nearest_seed, "random_walker (skimage)": random_walker,
                       "clipapro scribble2mask": lambda img, s: ours_scribbles(img, s, args.scribble_opts)}
            methods = {k: v for k, v in methods.items() if k.split()[0] not in args.skip}
            per_seed.append(run(samples, methods, lambda fn, key, img, gt, scr=scr: fn(img, scr[key])))
        scr = {k: row_scribbles(gt) for k, _, gt in samples}
        result["rows"] = run(samples, methods, lambda fn, key, img, gt, scr=scr: fn(img, scr[key]))
        result["scribbles"] = {
            name: {"miou": float(np.mean([r[name]["miou"] for r in per_seed])),
                   "miou_per_seed": [r[name]["miou"] for r in per_seed],
                   "median_s": statistics.median([r[name]["median_s"] for r in per_seed])}
            for name in per_seed[0]}
    print(f"{'task':10s} {'method':28s} {'mIoU':>7s} {'s/photo':>8s}")
    for task in ("boxes", "scribbles", "rows"):
        for name, r in result.get(task, {}).items():
            print(f"{task:10s} {name:28s} {100 * r['miou']:7.2f} {r['median_s']:8.3f}")
    print(json.dumps(result))
    if args.json:
        from clipapro.io import write_json_atomic

        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
