"""Box pseudo masks for a whole instance dataset: every box through the no-network ``box2mask`` tool
(:func:`clipapro.adapters.tools.box_to_probs`), written as COCO results with RLE masks.

Resumable: each finished image is appended as one fsynced JSON line to ``<out>.partial.jsonl``
(a header line records the settings); a restart skips the images already there (a torn last line is
dropped), and the COCO results JSON of every image done so far is written atomically at the end. The
partial file stays as the record of what is done (a run with ``limit=10`` then one without does only
the rest); delete it to compute everything again.

Example:
    >>> from clipapro.data.instances import CocoInstances  # doctest: +SKIP
    >>> ds = CocoInstances("boxes.json", "images", with_masks=False)  # doctest: +SKIP
    >>> summary = box_masks_to_coco(ds, "masks.json")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from clipapro._deps import require
from clipapro._validate import check_choice, check_int
from clipapro.adapters.tools import box_to_probs
from clipapro.io import write_json_atomic
from clipapro.metrics.instances import masks_to_results

__all__ = ["OVERLAPS", "SCORES", "ResumeMismatchError", "box_masks_to_coco", "box_probs_to_masks", "partial_path"]

#: ``one``: every mask scores 1.0; ``mean-prob``: the mean foreground probability inside the mask.
SCORES = ("one", "mean-prob")
#: ``exclusive``: a pixel goes to the box whose probability is highest (as ``box2mask``'s PNG);
#: ``independent``: each box thresholded on its own (masks may overlap).
OVERLAPS = ("exclusive", "independent")


class ResumeMismatchError(ValueError):
    """The partial file of an earlier run was written with other settings."""


def partial_path(out) -> Path:
    """The append-only progress file of a run writing ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


def box_probs_to_masks(probs: torch.Tensor, *, threshold: float = 0.5, overlap: str = "exclusive"):
    """(M, H, W) soft masks -> ((M, H, W) bool masks, (M,) mean probability inside each mask; 0 if empty)."""
    check_choice(overlap, "overlap", OVERLAPS)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if probs.dim() != 3:
        raise ValueError(f"probs must be (M, H, W), got shape {tuple(probs.shape)}")
    masks = probs > threshold
    if overlap == "exclusive" and probs.shape[0] > 1:
        masks &= probs == probs.max(0, keepdim=True).values
    area = masks.flatten(1).sum(1)
    mean = (probs * masks).flatten(1).sum(1) / area.clamp_min(1)
    return masks, mean


def _read_partial(path: Path, config: dict) -> dict[int, list]:
    done: dict[int, list] = {}
    if not path.is_file():
        return done
    lines = path.read_bytes().splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except ValueError:
        header = {}
    if header.get("config") != config:
        raise ResumeMismatchError(f"{path} was written with other settings ({header.get('config')}); delete it "
                                  f"to start over, or rerun with the same settings ({config})")
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            done[int(entry["image_id"])] = list(entry["results"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line: the image is done again
    return done


def box_masks_to_coco(dataset, out, *, threshold: float = 0.5, rounds: int | None = None, score: str = "one",
                      overlap: str = "exclusive", limit: int | None = None, progress: bool = True,
                      config: dict | None = None) -> dict:
    """Run ``box2mask`` on every box of ``dataset`` (an :class:`~clipapro.data.instances.InstanceDataset`)
    and write COCO results (``image_id``, ``category_id``, ``segmentation`` RLE, ``bbox`` = the input box,
    ``score``) to ``out``. ``rounds``: :func:`box_to_probs` rounds (None = its default); ``limit``: the
    first images only. ``config``: extra settings that must match on resume (e.g. the annotation file).

    Returns ``{"images", "boxes", "empty_masks" (masks with no pixel over the threshold), "skipped_done"
    (images found done in the partial file), "seconds" (this run), "out"}``.
    """
    check_choice(score, "score", SCORES)
    check_choice(overlap, "overlap", OVERLAPS)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    options = {} if rounds is None else {"rounds": check_int(rounds, "rounds", min_value=1)}
    n = len(dataset) if limit is None else min(check_int(limit, "limit", min_value=1), len(dataset))
    from tqdm import tqdm

    out = Path(out)
    part = partial_path(out)
    settings = {"threshold": threshold, "rounds": rounds, "score": score, "overlap": overlap, **(config or {})}
    done = _read_partial(part, settings)
    part.parent.mkdir(parents=True, exist_ok=True)
    if not part.is_file() or part.stat().st_size == 0:
        with open(part, "wb") as fh:
            fh.write((json.dumps({"config": settings}) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
    ids = dataset.ids[:n]
    todo = [i for i in range(n) if ids[i] not in done]
    skipped, t0 = n - len(todo), time.perf_counter()
    with open(part, "ab") as fh:
        for i in tqdm(todo, desc="box2mask", unit="img", disable=not progress):
            s = dataset[i]
            if len(s):
                probs = box_to_probs(s.image.double(), s.boxes.double(), **options)
                masks, mean = box_probs_to_masks(probs, threshold=threshold, overlap=overlap)
                scores = torch.ones(len(s), dtype=torch.float64) if score == "one" else mean
                results = masks_to_results(s.image_id, masks, s.labels, scores, boxes=s.boxes)
            else:
                results = []
            done[s.image_id] = results
            fh.write((json.dumps({"image_id": s.image_id, "results": results}) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
    merged = [r for image_id in ids for r in done[image_id]]
    mask_util = require("pycocotools.mask", what="COCO masks")
    empty = int(sum(mask_util.area(r["segmentation"]) == 0 for r in merged))
    write_json_atomic(out, merged, indent=None)
    return {"images": n, "boxes": len(merged), "empty_masks": empty, "skipped_done": skipped,
            "seconds": time.perf_counter() - t0, "out": str(out)}
