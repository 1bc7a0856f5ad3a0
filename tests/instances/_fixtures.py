"""A tiny COCO instance dataset on disk (the real layout: JSON + image folder), for the Mask R-CNN tests."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image


def write_coco_fixture(root, n_images: int = 4, height: int = 64, width: int = 80, seed: int = 0):
    """``root/images/img_<i>.png`` with 1-2 ellipses each on a noisy background, ``root/instances.json``
    with their boxes and polygon outlines; returns ``(json_path, images_dir)``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    for i in range(n_images):
        arr = rng.integers(20, 60, (height, width, 3)).astype(np.uint8)
        for k in range(1 + i % 2):
            cx, cy = rng.uniform(18, width - 18), rng.uniform(16, height - 16)
            rx, ry = rng.uniform(8, 15), rng.uniform(8, 14)
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            arr[inside] = (200, 80 + 60 * k, 60)
            ys, xs = np.nonzero(inside)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            poly = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1).clip(0, [width, height]).ravel()
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 3 + k, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(inside.sum()),
                         "segmentation": [poly.round(2).tolist()]})
        Image.fromarray(arr).save(root / "images" / f"img_{i}.png")
        images.append({"id": i + 1, "file_name": f"img_{i}.png", "width": width, "height": height})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 3, "name": "blob"}, {"id": 4, "name": "other"}]}
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path, root / "images"
