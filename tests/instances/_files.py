"""Writers of tiny instance datasets in the exact on-disk layouts (COCO JSON + images, VOC2012 devkit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from clipapro.io import voc_palette


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE written by hand: column-major run lengths, starting with a run of zeros."""
    flat = mask.astype(np.uint8).ravel(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def rect_mask(h, w, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def photo(h: int, w: int, rects) -> np.ndarray:
    """Green background with a distinct bright colour per rectangle (x0, y0, x1, y1)."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:] = (40, 120, 60)
    colours = [(220, 60, 60), (60, 60, 230), (230, 230, 40)]
    for k, (x0, y0, x1, y1) in enumerate(rects):
        arr[y0:y1, x0:x1] = colours[k % len(colours)]
    return arr


def write_coco(root: Path) -> dict:
    """``root/images/{a,b}.png`` + ``root/ann.json``: image 1 (H=10, W=12) with a polygon, an RLE,
    an uncompressed RLE and a crowd annotation; image 2 (H=8, W=9) with one RLE; image 3 with none.
    Category ids 5 and 9 (not 1-based). Returns {"json", "images", "masks": {image_id: (N, H, W)}, "data"}."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    h1, w1, h2, w2 = 10, 12, 8, 9
    m_rle = rect_mask(h1, w1, 6, 1, 11, 5)
    m_unc = rect_mask(h1, w1, 1, 6, 5, 10)
    m_unc[7, 2] = False  # a hole, so the run lengths are not trivial
    m_b = rect_mask(h2, w2, 2, 2, 7, 6)
    Image.fromarray(photo(h1, w1, [(1, 1, 5, 5), (6, 1, 11, 5), (1, 6, 5, 10)])).save(img_dir / "a.png")
    Image.fromarray(photo(h2, w2, [(2, 2, 7, 6)])).save(img_dir / "b.png")
    Image.fromarray(photo(h2, w2, [])).save(img_dir / "c.png")
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0, "bbox": [1, 1, 4, 4], "area": 16.0,
         "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]},
        {"id": 2, "image_id": 1, "category_id": 9, "iscrowd": 0, "bbox": [6, 1, 5, 4], "area": float(m_rle.sum()),
         "segmentation": compressed_rle(m_rle)},
        {"id": 3, "image_id": 1, "category_id": 5, "iscrowd": 0, "bbox": [1, 6, 4, 4], "area": float(m_unc.sum()),
         "segmentation": uncompressed_rle(m_unc)},
        {"id": 4, "image_id": 1, "category_id": 9, "iscrowd": 1, "bbox": [0, 0, 12, 1], "area": 12.0,
         "segmentation": uncompressed_rle(rect_mask(h1, w1, 0, 0, 12, 1))},
        {"id": 5, "image_id": 2, "category_id": 9, "iscrowd": 0, "bbox": [2, 2, 5, 4], "area": float(m_b.sum()),
         "segmentation": compressed_rle(m_b)},
    ]
    data = {"images": [{"id": 1, "file_name": "a.png", "width": w1, "height": h1},
                       {"id": 2, "file_name": "b.png", "width": w2, "height": h2},
                       {"id": 3, "file_name": "c.png", "width": w2, "height": h2}],
            "annotations": anns, "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}
    path = root / "ann.json"
    path.write_text(json.dumps(data))
    return {"json": path, "images": img_dir, "data": data,
            "masks": {1: (None, m_rle, m_unc), 2: (m_b,)}}


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _save_index_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    img.save(path, format="PNG")


def voc_xml(stem: str, w: int, h: int, objects) -> str:
    """A VOC2012 annotation: ``objects`` = [(name, xmin, ymin, xmax, ymax)] in 1-based inclusive pixels."""
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>{stem}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>1</segmented>{objs}</annotation>")


def write_voc(root: Path) -> dict:
    """``root/VOCdevkit/VOC2012`` with one segmented image 2007_000032 (H=9, W=11): a dog (class 12) and a
    person (15) whose SegmentationObject instances 1, 2 follow the XML order, a 255 void border on the
    dog; ImageSets/Segmentation/val.txt and ImageSets/Main/train.txt (a box-only image 2008_000002)."""
    base = root / "VOCdevkit" / "VOC2012"
    h, w = 9, 11
    dog, person = rect_mask(h, w, 1, 1, 5, 6), rect_mask(h, w, 6, 2, 10, 8)
    inst = np.zeros((h, w), np.int64)
    inst[dog], inst[person] = 1, 2
    cls = np.zeros((h, w), np.int64)
    cls[dog], cls[person] = 12, 15
    border = rect_mask(h, w, 0, 0, 6, 7) & ~dog & ~person
    inst[border], cls[border] = 255, 255
    (base / "JPEGImages").mkdir(parents=True)
    Image.fromarray(photo(h, w, [(1, 1, 5, 6), (6, 2, 10, 8)])).save(base / "JPEGImages" / "2007_000032.jpg",
                                                                      quality=95)
    Image.fromarray(photo(6, 7, [(1, 1, 4, 4)])).save(base / "JPEGImages" / "2008_000002.jpg", quality=95)
    (base / "Annotations").mkdir()
    # xmin..xmax 1-based inclusive: the dog covers 0-based columns 1..4 -> xmin 2, xmax 5
    (base / "Annotations" / "2007_000032.xml").write_text(
        voc_xml("2007_000032", w, h, [("dog", 2, 2, 5, 6), ("person", 7, 3, 10, 8)]))
    (base / "Annotations" / "2008_000002.xml").write_text(voc_xml("2008_000002", 7, 6, [("cat", 2, 2, 4, 4)]))
    _save_index_png(base / "SegmentationObject" / "2007_000032.png", inst)
    _save_index_png(base / "SegmentationClass" / "2007_000032.png", cls)
    for sub, names in (("Segmentation", ["2007_000032"]), ("Main", ["2007_000032", "2008_000002"])):
        (base / "ImageSets" / sub).mkdir(parents=True)
        (base / "ImageSets" / sub / ("val.txt" if sub == "Segmentation" else "train.txt")).write_text(
            "\n".join(names) + "\n")
    return {"base": base, "masks": np.stack([dog, person]), "inst": inst, "cls": cls}
