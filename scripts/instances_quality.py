"""Box -> instance mask quality on real photos: clipapro's no-network box2mask vs OpenCV GrabCut vs the
filled box, on the Penn-Fudan instance set of ../shared/data (boxes = the tight boxes of the real masks).

    python scripts/instances_quality.py                       # all 113 photos
    python scripts/instances_quality.py --every 3 --markdown out.md --json out.json --figures figs/

Per method: COCO mask AP / AP50 / AP75 (clipapro.metrics.instances.mask_ap, every mask scores 1.0, one
mask per ground-truth box), mean IoU per instance (each mask against its own box's ground truth), and
seconds per image (median and mean over images, same process, same machine). box2mask is run with its
defaults (box_to_probs signature, threshold 0.5) and both overlap rules of ``box2mask --coco``;
GrabCut: cv2.grabCut(image, rect=box, 5 iterations, GC_INIT_WITH_RECT), foreground = FGD | PR_FGD, with
OpenCV's RNG seeded per box (its k-means initialisation is random: unseeded, the IoU of one photo moved
from 0.28 to 0.53 between two runs).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipapro.adapters.tools import box_to_probs  # noqa: E402
from clipapro.data.instances import CocoInstances  # noqa: E402
from clipapro.metrics.instances import instance_ious, mask_ap, masks_to_results  # noqa: E402
from clipapro.pseudo.coco_masks import box_probs_to_masks  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pennfudan"
METHODS = ("box2mask", "box2mask (independent)", "GrabCut", "filled box")


def filled_boxes(boxes: torch.Tensor, h: int, w: int) -> np.ndarray:
    """(N, 4) pixel-edge boxes -> (N, H, W) bool: the pixels whose centres lie inside each box."""
    ys = np.arange(h)[:, None] + 0.5
    xs = np.arange(w)[None, :] + 0.5
    b = boxes.numpy().astype(np.float64)
    return np.stack([(xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1) for x0, y0, x1, y1 in b]) if len(b) \
        else np.zeros((0, h, w), bool)


def grabcut_masks(image: torch.Tensor, boxes: torch.Tensor, iterations: int = 5) -> tuple[np.ndarray, int]:
    """GrabCut per box: ((N, H, W) bool, number of boxes GrabCut refused, which get the filled box)."""
    import cv2

    bgr = np.ascontiguousarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1])
    h, w = bgr.shape[:2]
    out, failed = filled_boxes(boxes, h, w), 0
    for k, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
        mask = np.zeros((h, w), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(k)  # GrabCut's k-means initialisation draws from OpenCV's global RNG
        try:
            cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
        except cv2.error:
            failed += 1
            continue
        out[k] = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return out, failed


def run(data: Path, limit: int | None, figures: Path | None, n_figures: int, every: int = 1) -> dict:
    ds = CocoInstances(data / "instances.json", data / "images")
    picked = list(range(0, len(ds), every))
    picked = picked if limit is None else picked[:limit]
    n = len(picked)
    results = {m: [] for m in METHODS}
    ious = {m: [] for m in METHODS}
    seconds = {m: [] for m in METHODS}
    grabcut_failed = 0
    for j, i in enumerate(picked):
        s = ds[i]
        h, w = s.image.shape[1:]
        gt = s.masks.numpy()
        t0 = time.perf_counter()
        probs = box_to_probs(s.image.double(), s.boxes.double())
        exclusive, _ = box_probs_to_masks(probs, overlap="exclusive")
        t_b2m = time.perf_counter() - t0
        independent, _ = box_probs_to_masks(probs, overlap="independent")
        t0 = time.perf_counter()
        grab, failed = grabcut_masks(s.image, s.boxes)
        t_grab = time.perf_counter() - t0
        grabcut_failed += failed
        t0 = time.perf_counter()
        box = filled_boxes(s.boxes, h, w)
        t_box = time.perf_counter() - t0
        masks = {"box2mask": exclusive.numpy(), "box2mask (independent)": independent.numpy(), "GrabCut": grab,
                 "filled box": box}
        times = {"box2mask": t_b2m, "box2mask (independent)": t_b2m, "GrabCut": t_grab, "filled box": t_box}
        for m in METHODS:
            results[m] += masks_to_results(s.image_id, masks[m], s.labels, np.ones(len(s)), boxes=s.boxes)
            ious[m] += instance_ious(gt, masks[m]).tolist()
            seconds[m].append(times[m])
        if figures is not None and j < n_figures:
            from clipapro.viz import instance_label_map, save_panels

            panels = {m: instance_label_map(masks[m]) for m in ("box2mask", "GrabCut", "filled box")}
            panels["ground truth"] = instance_label_map(gt)
            save_panels(figures / f"{Path(s.file_name).stem}.png", s.image, panels,
                        ["none"] + [f"instance {k + 1}" for k in range(len(s))], hide_index=0, panel_width=240)
        print(f"[{j + 1}/{n}] {s.file_name}: {len(s)} instances, IoU box2mask "
              f"{np.mean(ious['box2mask'][-len(s):]):.3f} GrabCut {np.mean(ious['GrabCut'][-len(s):]):.3f} "
              f"({t_b2m:.2f} s / {t_grab:.2f} s)", flush=True)
    coco = _subset_coco(ds, [ds.ids[i] for i in picked])
    rows = {}
    for m in METHODS:
        ap = mask_ap(coco, results[m])
        rows[m] = {"AP": ap["AP"], "AP50": ap["AP50"], "AP75": ap["AP75"],
                   "mIoU_instance": 100 * float(np.mean(ious[m])),
                   "s_per_image_median": statistics.median(seconds[m]),
                   "s_per_image_mean": statistics.fmean(seconds[m])}
    return {"images": n, "of_images": len(ds), "every": every, "instances": len(ious["box2mask"]),
            "grabcut_failed": grabcut_failed, "methods": rows, "data": str(data)}


def _subset_coco(ds, image_ids):
    """Ground truth of the scored images only (a subset run must not count the others as misses)."""
    from clipapro.data.instances import coco_from_dict

    keep = set(image_ids)
    d = ds.coco.dataset
    return coco_from_dict({**d, "images": [im for im in d["images"] if im["id"] in keep],
                           "annotations": [a for a in d["annotations"] if a["image_id"] in keep]})


def markdown(summary: dict) -> str:
    k = summary["every"]
    subset = f" (one in {k} of {summary['of_images']}: photos 0, {k}, {2 * k}, ...)" if k > 1 else ""
    lines = [f"Penn-Fudan, {summary['images']} photos{subset}, {summary['instances']} instances (boxes = tight boxes "
             "of the real masks; every mask scores 1.0)", "",
             "| method | mask AP | AP50 | AP75 | mean IoU per instance | s / image (median) | s / image (mean) |",
             "|:--|--:|--:|--:|--:|--:|--:|"]
    for m, r in summary["methods"].items():
        lines.append(f"| {m} | {r['AP']:.1f} | {r['AP50']:.1f} | {r['AP75']:.1f} | {r['mIoU_instance']:.1f} | "
                     f"{r['s_per_image_median']:.3f} | {r['s_per_image_mean']:.3f} |")
    if summary["grabcut_failed"]:
        lines.append(f"\nGrabCut refused {summary['grabcut_failed']} box(es); they count as the filled box.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the pennfudan folder")
    ap.add_argument("--limit", type=int, default=None, help="first N (picked) photos only")
    ap.add_argument("--every", type=int, default=1, help="every K-th photo (0, K, 2K, ...): a subset across the set")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--render", type=Path, help="only print (and --markdown) the table of an earlier --json")
    ap.add_argument("--figures", type=Path, help="folder of figure grids (image | box2mask | GrabCut | box | GT)")
    ap.add_argument("--n-figures", type=int, default=6, help="how many photos get a figure")
    args = ap.parse_args(argv)
    if args.render:
        table = markdown(json.loads(args.render.read_text()))
        print(table, end="")
        if args.markdown:
            from clipapro.io import write_bytes_atomic

            write_bytes_atomic(args.markdown, table.encode())
        return 0
    if not (args.data / "instances.json").is_file():
        print(f"no Penn-Fudan data at {args.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    summary = run(args.data, args.limit, args.figures, args.n_figures, max(1, args.every))
    table = markdown(summary)
    print()
    print(table, end="")
    from clipapro.io import write_bytes_atomic, write_json_atomic

    if args.markdown:
        write_bytes_atomic(args.markdown, table.encode())
    if args.json:
        write_json_atomic(args.json, summary)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
