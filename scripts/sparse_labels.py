"""Derive scribbles and points from ground-truth masks, in the formats ``clipapro train`` reads.

Input: a set in the common layout (``<set>/images/<id>.png``, ``<set>/masks/<id>.png`` with class indices
and 255 = void, ``<set>/meta.json`` with ``num_classes`` and optional ``splits``).

Segments: the 4-connected components of each class (void excluded) with at least ``--min-area``
pixels; smaller ones get no label (as an annotator skips specks).

Scribbles (``OUT/scribbles/<id>.png``, mode L, 255 = unlabelled): one stroke per segment. The segment is
eroded by ``r = max(1, round(0.04 * sqrt(area)))`` pixels (the whole segment when erosion empties it)
and skeletonised (``skimage.morphology.skeletonize``); a skeleton pixel is drawn at random (seeded) and
the stroke is the part of the skeleton within ``--reach * sqrt(area)`` pixels (Euclidean) of it,
dilated to ``--width`` pixels (a square of that side around each skeleton pixel) and cut back to the
segment. Strokes therefore lie inside their segment, away from its boundary when it is thick
enough; 3-5 % of the labelled pixels of a CamVid frame at the defaults (printed).

Points (``OUT/points/<id>.json``, ``{"points": [{"x", "y", "class"}, ...]}``): per segment, the pixel
farthest from the segment's boundary (Euclidean distance transform; the image border counts as
boundary; ties: first in row-major order), then ``--points-per-segment - 1`` more drawn at random
(seeded) among the segment's pixels at least half that distance from the boundary.

Randomness: one ``numpy`` generator per image, seeded by (``--seed``, CRC32 of the image id): outputs
do not depend on the order or the subset of images processed. Needs scipy and scikit-image (as
scripts/adapters_quality.py). Example::

    python scripts/sparse_labels.py ../shared/data/camvid --split train --out runs/camvid_sparse --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
    sys.path.insert(0, str(ROOT))

from clipapro.io import IGNORE_INDEX, read_label_png, write_json_atomic  # noqa: E402

__all__ = ["derive_points", "derive_scribbles", "main", "segments"]


def segments(mask: np.ndarray, *, min_area: int = 20):
    """Yield ``(class, (row slice, col slice), region bool crop)`` per 4-connected segment of each
    class of the (H, W) ``mask`` (255 skipped) with at least ``min_area`` pixels, class by class."""
    from scipy import ndimage

    for c in np.unique(mask):
        if c == IGNORE_INDEX:
            continue
        comp, n = ndimage.label(mask == c)
        for i, sl in enumerate(ndimage.find_objects(comp), start=1):
            region = comp[sl] == i
            if int(region.sum()) >= min_area:
                yield int(c), sl, region


def _inner_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel of ``region`` to the nearest pixel outside it (0 outside)."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def derive_scribbles(mask: np.ndarray, rng, *, min_area: int = 20, width: int = 3,
                     reach: float = 0.35) -> np.ndarray:
    """(H, W) int64 scribble map from a ground-truth ``mask``: one stroke per segment (module doc)."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    out = np.full(mask.shape, IGNORE_INDEX, np.int64)
    for c, sl, region in segments(mask, min_area=min_area):
        area = int(region.sum())
        r = max(1, round(0.04 * np.sqrt(area)))
        padded = np.pad(region, r + 1)  # erode against the crop border as against the segment's
        eroded = ndimage.binary_erosion(padded, iterations=r)[r + 1:-r - 1, r + 1:-r - 1]
        skel = skeletonize(eroded if eroded.any() else region)
        ys, xs = np.nonzero(skel)
        if ys.size == 0:
            continue
        k = rng.integers(ys.size)
        keep = (ys - ys[k]) ** 2 + (xs - xs[k]) ** 2 <= (reach ** 2) * area
        stroke = np.zeros_like(region)
        stroke[ys[keep], xs[keep]] = True
        if width > 1:
            stroke = ndimage.binary_dilation(stroke, structure=np.ones((width, width), bool))
        view = out[sl]
        view[stroke & region] = c
    return out


def derive_points(mask: np.ndarray, rng, *, min_area: int = 20, per_segment: int = 1) -> list[tuple]:
    """``[(x, y, class), ...]`` (column, row) from a ground-truth ``mask``: per segment its deepest
    pixel, plus ``per_segment - 1`` random deep ones (module doc)."""
    if per_segment < 1:
        raise ValueError(f"per_segment must be >= 1, got {per_segment}")
    points = []
    for c, sl, region in segments(mask, min_area=min_area):
        dist = _inner_distance(region)
        best = int(np.argmax(dist))  # first maximum in row-major order
        y, x = divmod(best, region.shape[1])
        chosen = [(y, x)]
        if per_segment > 1:
            ys, xs = np.nonzero(dist >= 0.5 * dist.flat[best])
            others = [i for i in range(ys.size) if (ys[i], xs[i]) != (y, x)]
            take = rng.permutation(len(others))[:per_segment - 1]
            chosen += [(int(ys[others[i]]), int(xs[others[i]])) for i in sorted(take)]
        points += [(int(px + sl[1].start), int(py + sl[0].start), c) for py, px in chosen]
    return points


def _rng(seed: int, image_id: str):
    return np.random.default_rng([int(seed), zlib.crc32(image_id.encode())])


def _ids(root: Path, split: str | None) -> list[str]:
    meta = root / "meta.json"
    if split and meta.is_file():
        splits = json.loads(meta.read_text()).get("splits", {})
        if split not in splits:
            raise SystemExit(f"{meta} has no split {split!r} (splits: {sorted(splits)})")
        return [str(i) for i in splits[split]]
    if split:
        return (root / f"{split}.txt").read_text().split()
    return sorted(p.stem for p in (root / "masks").glob("*.png"))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="a set in the common layout (images/, masks/, meta.json)")
    ap.add_argument("--split", default=None, help="split of meta.json (or <split>.txt); default: all masks")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT/scribbles/ and OUT/points/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-area", type=int, default=20, help="smallest segment that gets a label (pixels)")
    ap.add_argument("--width", type=int, default=3, help="stroke width in pixels")
    ap.add_argument("--reach", type=float, default=0.35, help="stroke extent, in sqrt(segment area)")
    ap.add_argument("--points-per-segment", type=int, default=1)
    args = ap.parse_args(argv)
    from PIL import Image
    from tqdm import tqdm

    (args.out / "scribbles").mkdir(parents=True, exist_ok=True)
    (args.out / "points").mkdir(parents=True, exist_ok=True)
    labelled = stroked = n_points = 0
    ids = _ids(args.root, args.split)
    for image_id in tqdm(ids, desc="sparse labels", unit="img"):
        mask = read_label_png(args.root / "masks" / f"{image_id}.png")
        scr = derive_scribbles(mask, _rng(args.seed, image_id), min_area=args.min_area, width=args.width,
                               reach=args.reach)
        pts = derive_points(mask, _rng(args.seed + 1, image_id), min_area=args.min_area,
                            per_segment=args.points_per_segment)
        path = args.out / "scribbles" / f"{image_id}.png"
        tmp = path.with_suffix(".tmp.png")
        Image.fromarray(scr.astype(np.uint8), mode="L").save(tmp)
        tmp.replace(path)
        write_json_atomic(args.out / "points" / f"{image_id}.json",
                          {"points": [{"x": x, "y": y, "class": c} for x, y, c in pts]})
        labelled += int((mask != IGNORE_INDEX).sum())
        stroked += int((scr != IGNORE_INDEX).sum())
        n_points += len(pts)
    summary = {"images": len(ids), "scribble_fraction_of_labelled": stroked / max(labelled, 1),
               "points_per_image": n_points / max(len(ids), 1),
               "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    write_json_atomic(args.out / "summary.json", summary)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
