"""Instance-segmentation metrics: COCO mask/box AP through ``pycocotools.cocoeval`` and per-instance IoU.

Predictions use the COCO results format (what detectron2's ``COCOEvaluator`` and torchvision's
references write): a list of ``{"image_id", "category_id", "segmentation": RLE with str counts,
"score"}`` (plus ``"bbox": [x, y, w, h]`` for ``iou_type="bbox"``). Values are percent, as detectron2
prints them; NaN where a value is undefined (no ground truth in that area range / class).

Example:
    >>> import numpy as np
    >>> from clipapro.metrics.instances import encode_masks, mean_instance_iou
    >>> m = np.zeros((1, 4, 4), bool); m[0, :2] = True
    >>> encode_masks(m)[0]["size"], mean_instance_iou(m, m)
    ([4, 4], 1.0)
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from clipapro._deps import require

__all__ = ["AP_KEYS", "ap_markdown", "encode_masks", "instance_ious", "json_safe", "mask_ap", "masks_to_results",
           "mean_instance_iou"]

#: The headline numbers, in COCOeval's ``stats`` order.
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _as_bool_masks(masks, name: str) -> np.ndarray:
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W), got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "biu" or (arr.size and not np.isin(arr, (0, 1)).all()):
            raise TypeError(f"{name} must be boolean (or 0/1 integers), got {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def encode_masks(masks) -> list[dict]:
    """(N, H, W) bool masks (numpy or torch) -> N COCO RLE dicts ``{"size": [H, W], "counts": str}``."""
    mask_util = require("pycocotools.mask", what="RLE encoding")
    arr = _as_bool_masks(masks, "masks")
    if arr.shape[0] == 0:
        return []
    rles = mask_util.encode(np.asfortranarray(arr.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def masks_to_results(image_id: int, masks, labels, scores, *, boxes=None) -> list[dict]:
    """COCO results of one image: one dict per mask with ``segmentation`` (RLE), ``bbox`` ``[x, y, w, h]``
    (from ``boxes`` (N, 4) x0, y0, x1, y1 when given, else the mask's tight box), ``category_id``, ``score``."""
    mask_util = require("pycocotools.mask", what="COCO results")
    rles = encode_masks(masks)
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)
    scores = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float64).reshape(-1)
    n = len(rles)
    if labels.shape[0] != n or scores.shape[0] != n:
        raise ValueError(f"masks, labels and scores must have the same length, got {n}, {labels.shape[0]}, "
                         f"{scores.shape[0]}")
    if boxes is not None:
        b = np.asarray(boxes.cpu() if hasattr(boxes, "cpu") else boxes, dtype=np.float64).reshape(-1, 4)
        if b.shape[0] != n:
            raise ValueError(f"boxes must be ({n}, 4), got {b.shape}")
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()
    else:
        xywh = [list(map(float, mask_util.toBbox(r))) for r in rles]
    return [{"image_id": int(image_id), "category_id": int(labels[i]), "segmentation": rles[i],
             "bbox": [float(v) for v in xywh[i]], "score": float(scores[i])} for i in range(n)]


def _check_predictions(coco_gt, predictions, iou_type: str) -> list[dict]:
    if not isinstance(predictions, list):
        raise TypeError(f"predictions must be a list of COCO result dicts, got {type(predictions).__name__}")
    images = {i: (im["height"], im["width"]) for i, im in coco_gt.imgs.items()}
    cats = set(coco_gt.cats)
    out = []
    for k, p in enumerate(predictions):
        where = f"predictions[{k}]"
        if not isinstance(p, dict):
            raise ValueError(f"{where} must be a dict, got {type(p).__name__}")
        for key in ("image_id", "category_id", "score"):
            if key not in p:
                raise ValueError(f"{where} has no {key!r}")
        if p["image_id"] not in images:
            raise ValueError(f"{where}: image_id {p['image_id']!r} is not an image of the ground truth")
        if p["category_id"] not in cats:
            raise ValueError(f"{where}: unknown category_id {p['category_id']!r} (ground truth has {sorted(cats)})")
        if not isinstance(p["score"], (int, float)) or not math.isfinite(p["score"]):
            raise ValueError(f"{where}: score must be a finite number, got {p['score']!r}")
        if iou_type == "segm":
            seg = p.get("segmentation")
            if not (isinstance(seg, dict) and "counts" in seg and "size" in seg):
                raise ValueError(f"{where}: segmentation must be a COCO RLE dict with size and counts")
            if list(seg["size"]) != list(images[p["image_id"]]):
                raise ValueError(f"{where}: RLE size {seg['size']} is not image {p['image_id']}'s [height, width] "
                                 f"{list(images[p['image_id']])}")
            if isinstance(seg["counts"], list):  # uncompressed RLE: COCOeval needs the compressed form
                mask_util = require("pycocotools.mask", what="mask AP")
                seg = mask_util.frPyObjects(seg, *seg["size"])
                seg["counts"] = seg["counts"].decode("ascii")
            p = {**p, "segmentation": seg}
        else:
            bbox = p.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise ValueError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
            p = {k2: v for k2, v in p.items() if k2 != "segmentation"}  # COCOeval would use it as the area
        out.append(dict(p))  # loadRes writes into the dicts: never into the caller's
    return out


def mask_ap(coco_gt, predictions, *, iou_type: str = "segm") -> dict:
    """COCO AP of ``predictions`` against ``coco_gt`` (a ``pycocotools.coco.COCO``), as detectron2 reports.

    Returns ``{"AP", "AP50", "AP75", "APs", "APm", "APl": percent or NaN, "per_class": {name: AP},
    "iou_type", "num_images", "num_predictions"}``. AP averages IoU 0.50:0.95 with COCO's 101-point
    interpolated precision, up to 100 detections per image; every ground-truth image counts (an image
    without predictions only adds misses). No predictions at all gives AP 0 where there is ground truth.

    Example:
        >>> from clipapro.data.instances import coco_from_dict
        >>> m = np.zeros((1, 8, 8), bool); m[0, 2:6, 2:6] = True
        >>> res = masks_to_results(1, m, [1], [1.0])
        >>> gt = coco_from_dict({"images": [{"id": 1, "width": 8, "height": 8}], "categories": [{"id": 1, "name": "a"}],
        ...     "annotations": [{**res[0], "id": 1, "area": 16, "iscrowd": 0}]})
        >>> round(mask_ap(gt, res)["AP"], 6)
        100.0
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    cocoeval = require("pycocotools.cocoeval", what="mask AP")
    preds = _check_predictions(coco_gt, predictions, iou_type)
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    gt_cats = {a["category_id"] for a in coco_gt.dataset["annotations"] if not a.get("iscrowd", 0)}
    out = {"iou_type": iou_type, "num_images": len(coco_gt.imgs), "num_predictions": len(preds)}
    if not preds:
        out.update({k: (0.0 if gt_cats else math.nan) for k in AP_KEYS})
        out["per_class"] = {names[c]: (0.0 if c in gt_cats else math.nan) for c in sorted(names)}
        return out
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(preds)
        ev = cocoeval.COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for key, value in zip(AP_KEYS, ev.stats[:6], strict=True):
        out[key] = float(value * 100) if value >= 0 else math.nan
    # per class as detectron2: precision (iou, recall, class, area=all, maxDets=100), mean over defined entries
    precision = ev.eval["precision"]
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean() * 100) if p.size else math.nan
    out["per_class"] = per_class
    return out


def instance_ious(gt_masks, pred_masks) -> np.ndarray:
    """IoU of each prediction with its own ground truth (one prediction per box): (N,) float64.

    ``gt_masks``, ``pred_masks``: (N, H, W) bool, instance i of one paired with instance i of the other.
    Two empty masks agree (IoU 1).
    """
    gt = _as_bool_masks(gt_masks, "gt_masks")
    pred = _as_bool_masks(pred_masks, "pred_masks")
    if gt.shape != pred.shape:
        raise ValueError(f"gt_masks {gt.shape} and pred_masks {pred.shape} must have the same shape")
    flat = (gt.shape[0], gt.shape[1] * gt.shape[2])
    inter = (gt & pred).reshape(flat).sum(1)
    union = (gt | pred).reshape(flat).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0).astype(np.float64)


def mean_instance_iou(gt_masks, pred_masks) -> float:
    """Mean of :func:`instance_ious` (NaN for zero instances)."""
    ious = instance_ious(gt_masks, pred_masks)
    return float(ious.mean()) if ious.size else math.nan


def _fmt(v, digits: int) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def ap_markdown(result: dict, *, digits: int = 3, title: str | None = None) -> str:
    """The :func:`mask_ap` result as two Markdown tables (AP, AP50, ... then AP per class), as detectron2
    prints them."""
    kind = {"segm": "mask", "bbox": "box"}.get(result.get("iou_type"), "")
    lines = [f"{title or f'COCO {kind} AP'} ({result.get('num_images', '?')} images, "
             f"{result.get('num_predictions', '?')} predictions)", ""]
    lines.append("| " + " | ".join(AP_KEYS) + " |")
    lines.append("|" + "|".join(":-:" for _ in AP_KEYS) + "|")
    lines.append("| " + " | ".join(_fmt(result[k], digits) for k in AP_KEYS) + " |")
    lines += ["", "| category | AP |", "|:--|--:|"]
    lines += [f"| {name} | {_fmt(v, digits)} |" for name, v in result.get("per_class", {}).items()]
    return "\n".join(lines) + "\n"


def json_safe(obj):
    """A copy of ``obj`` with NaN / inf floats as ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
