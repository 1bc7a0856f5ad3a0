"""Instance-segmentation datasets in the formats people have: COCO instance JSON and PASCAL VOC XML.

Every reader gives ``ds[i] -> InstanceSample`` (torchvision-detection style, one image per sample):

* ``image``: float32 (3, H, W) RGB in [0, 1];
* ``boxes``: float32 (N, 4) ``x0, y0, x1, y1`` in pixel-edge coordinates (a box covering pixel
  columns 0..9 is ``x0 = 0, x1 = 10``; COCO ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``);
* ``labels``: int64 (N,) category ids as the file gives them (COCO ids; VOC 1..20 in VOC order);
* ``masks``: bool (N, H, W) or ``None`` (``with_masks=False``), instance i is box i;
* ``image_id`` (int, the id COCO results refer to) and ``file_name`` (the image path as given).

``ds.categories`` lists ``{"id", "name"}``; ``ds.coco`` is a ``pycocotools.coco.COCO`` of the ground
truth for :func:`clipapro.metrics.instances.mask_ap` (for VOC built in memory from the XML + PNGs).
Crowd annotations (``iscrowd = 1``) are left out of the samples, as torchvision's and detectron2's
training loaders do, and kept in ``ds.coco``, where COCOeval treats them as regions to ignore.

Checks at construction name the file and the entry: corrupt JSON/XML, boxes outside the image (more
than ``BOX_TOLERANCE`` pixels; within it they are clipped), zero-area boxes, unknown category ids,
missing image files. Pixel data (image size, masks) is checked when a sample is read.

The Penn-Fudan set in ``../shared/data/pennfudan`` is a COCO dataset:
``CocoInstances("pennfudan/instances.json", "pennfudan/images")`` or the catalog entry
``build_instance_dataset("pennfudan", "pennfudan")``. The VOC reader is in
:mod:`clipapro.data.voc_instances`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipapro._deps import require

from .base import DatasetItemError, read_image

__all__ = ["BOX_TOLERANCE", "CocoInstances", "InstanceDataset", "InstanceSample", "coco_from_dict"]

#: Boxes may reach this many pixels past the image border (float rounding in real COCO files); they
#: are clipped. Farther out is an error.
BOX_TOLERANCE = 1.0


@dataclass
class InstanceSample:
    """One image with its instances (shapes in the module docstring)."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    image_id: int
    file_name: str

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def coco_from_dict(data: dict):
    """A ``pycocotools.coco.COCO`` built from an in-memory dict (its progress prints suppressed)."""
    coco_mod = require("pycocotools.coco", what="instance datasets")
    coco = coco_mod.COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _image_tensor(path, width: int, height: int, where: str) -> torch.Tensor:
    img = read_image(path)
    if img.shape[:2] != (height, width):
        raise DatasetItemError(f"{where}: image {path} is {img.shape[1]}x{img.shape[0]} (WxH) but the "
                               f"annotations say {width}x{height}", path=path)
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)


def _check_box(box, width: int, height: int, where: str, path) -> list[float]:
    """``[x0, y0, x1, y1]`` checked against the image and clipped within :data:`BOX_TOLERANCE`."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        raise DatasetItemError(f"{path}: {where}: box {box} is not finite", path=path)
    if not (x1 > x0 and y1 > y0):
        raise DatasetItemError(f"{path}: {where}: box {box} (x0, y0, x1, y1) has zero area", path=path)
    t = BOX_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        raise DatasetItemError(f"{path}: {where}: box {box} (x0, y0, x1, y1) lies outside the {width}x{height} "
                               "(WxH) image", path=path)
    clipped = [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        raise DatasetItemError(f"{path}: {where}: box {box} has zero area inside the {width}x{height} image",
                               path=path)
    return clipped


class InstanceDataset:
    """Base of the instance readers: an indexable list of images with their checked instances.

    Subclasses fill ``self.records`` (one dict per image: ``image_id``, ``file_name``, ``path``,
    ``width``, ``height``, ``boxes`` (N, 4) list, ``labels`` list) and implement ``_masks(record)``.
    """

    name = "instances"

    def __init__(self, records, categories, *, with_masks: bool = True):
        self.records = list(records)
        self.categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in categories]
        self.with_masks = bool(with_masks)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, images={len(self)}, categories={len(self.categories)})"

    @property
    def ids(self) -> list[int]:
        """``image_id`` of every sample, in order."""
        return [r["image_id"] for r in self.records]

    @property
    def category_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.categories}

    def index_of(self, image_id: int) -> int:
        """Position of the sample with ``image_id`` (KeyError when there is none)."""
        if not hasattr(self, "_by_id"):
            self._by_id = {r["image_id"]: i for i, r in enumerate(self.records)}
        return self._by_id[image_id]

    def _masks(self, record) -> np.ndarray:  # (N, H, W) bool
        raise NotImplementedError

    def __getitem__(self, index: int) -> InstanceSample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} images")
        r = self.records[index]
        if r["path"] is None:
            raise DatasetItemError(f"{self.name}: image id {r['image_id']}: no image folder was given (annotations "
                                   "only)", sample_id=str(r["image_id"]))
        image = _image_tensor(r["path"], r["width"], r["height"], f"{self.name} image id {r['image_id']}")
        boxes = torch.tensor(r["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(r["labels"], dtype=torch.int64).reshape(-1)
        masks = torch.from_numpy(self._masks(r)) if self.with_masks else None
        return InstanceSample(image, boxes, labels, masks, int(r["image_id"]), str(r["file_name"]))


# -- COCO ----------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetItemError(f"annotation file {path} is not valid JSON: {err}", path=path) from None
    if not isinstance(data, dict):
        raise DatasetItemError(f"annotation file {path}: expected a JSON object with images, annotations and "
                               f"categories, got {type(data).__name__}", path=path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetItemError(f"annotation file {path}: missing or non-list {key!r} (COCO instance format)",
                                   path=path)
    return data


def _resolve_image(images_dir: Path, file_name: str) -> Path | None:
    """``images_dir/file_name`` (as detectron2 joins them), else ``images_dir/<basename>``."""
    for p in (images_dir / file_name, images_dir / Path(file_name).name):
        if p.is_file():
            return p
    return None


def _segmentation_kind(seg) -> str | None:
    if isinstance(seg, list):
        if seg and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            return "polygon"
        return None
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return "rle" if isinstance(seg["counts"], (str, bytes)) else "uncompressed-rle"
    return None


class CocoInstances(InstanceDataset):
    """A COCO instance-segmentation JSON with its image folder.

    Args:
        annotations_json: COCO JSON (``images`` with id/file_name/width/height, ``annotations`` with
            image_id/category_id/bbox ``[x, y, w, h]``/optional segmentation (polygons, RLE or
            uncompressed RLE)/iscrowd, ``categories`` with id/name).
        images_dir: folder the ``file_name`` entries are relative to (``images_dir/<basename>`` is tried
            too, so ``pennfudan/images`` and ``pennfudan`` both work for ``images/<name>.png``). ``None``:
            annotations only (``ds.coco`` for scoring; reading a sample raises).
        with_masks: decode the segmentations into ``masks`` (needs one on every non-crowd annotation).
        skip_bad_boxes: leave out annotations whose box has zero area or lies outside the image (as
            torchvision's COCO training loader drops degenerate boxes) instead of raising; their
            messages are kept in ``ds.skipped``. They stay in ``ds.coco`` (the ground truth is not edited).

    Example:
        >>> ds = CocoInstances("coco/annotations/instances_val2017.json", "coco/val2017")  # doctest: +SKIP
        >>> s = ds[0]; s.boxes.shape, s.masks.shape  # doctest: +SKIP
        (torch.Size([8, 4]), torch.Size([8, 427, 640]))
    """

    def __init__(self, annotations_json, images_dir, *, with_masks: bool = True, skip_bad_boxes: bool = False):
        self.path = path = Path(annotations_json)
        self.skipped: list[str] = []  # messages of the annotations left out by skip_bad_boxes
        self.images_dir = images_dir = None if images_dir is None else Path(images_dir)
        self.name = path.name
        data = _read_json(path)
        if images_dir is not None and not images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {images_dir} (for {path})")
        categories = []
        for i, c in enumerate(data["categories"]):
            if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
                raise DatasetItemError(f"{path}: categories[{i}] must have an integer id and a name, got {c!r}",
                                       path=path)
            categories.append({"id": c["id"], "name": str(c["name"])})
        cat_ids = {c["id"] for c in categories}
        records, by_image = [], {}
        for i, im in enumerate(data["images"]):
            where = f"images[{i}]"
            if not isinstance(im, dict) or not all(k in im for k in ("id", "file_name", "width", "height")):
                raise DatasetItemError(f"{path}: {where} needs id, file_name, width and height, got {im!r}",
                                       path=path)
            if not isinstance(im["id"], int) or im["id"] in by_image:
                raise DatasetItemError(f"{path}: {where}: image id {im['id']!r} is not a unique integer", path=path)
            if not (isinstance(im["width"], int) and isinstance(im["height"], int) and im["width"] > 0
                    and im["height"] > 0):
                raise DatasetItemError(f"{path}: {where} (id {im['id']}): width/height must be positive integers",
                                       path=path)
            file = None if images_dir is None else _resolve_image(images_dir, str(im["file_name"]))
            if file is None and images_dir is not None:
                raise FileNotFoundError(f"{path}: {where} (id {im['id']}): image file {im['file_name']!r} not "
                                        f"found under {images_dir}")
            rec = {"image_id": im["id"], "file_name": str(im["file_name"]), "path": file, "width": im["width"],
                   "height": im["height"], "boxes": [], "labels": [], "anns": []}
            by_image[im["id"]] = rec
            records.append(rec)
        ann_ids = set()
        for i, a in enumerate(data["annotations"]):
            where = f"annotations[{i}]"
            if not isinstance(a, dict) or not all(k in a for k in ("image_id", "category_id", "bbox")):
                raise DatasetItemError(f"{path}: {where} needs image_id, category_id and bbox", path=path)
            where = f"{where} (id {a.get('id')}, image {a['image_id']})"
            if a.get("id") is not None:
                if a["id"] in ann_ids:
                    raise DatasetItemError(f"{path}: {where}: duplicate annotation id", path=path)
                ann_ids.add(a["id"])
            rec = by_image.get(a["image_id"])
            if rec is None:
                raise DatasetItemError(f"{path}: {where}: unknown image_id {a['image_id']!r}", path=path)
            if a["category_id"] not in cat_ids:
                raise DatasetItemError(f"{path}: {where}: unknown category_id {a['category_id']!r} (categories: "
                                       f"{sorted(cat_ids)})", path=path)
            bbox = a["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise DatasetItemError(f"{path}: {where}: bbox must be [x, y, w, h] numbers, got {bbox!r}", path=path)
            x, y, w, h = (float(v) for v in bbox)
            if a.get("iscrowd", 0):
                continue  # an ignore region for COCOeval, not a training instance
            try:
                box = _check_box([x, y, x + w, y + h], rec["width"], rec["height"], where, path)
            except DatasetItemError as err:
                if not skip_bad_boxes:
                    raise
                self.skipped.append(str(err))
                continue
            seg = a.get("segmentation")
            if with_masks:
                kind = _segmentation_kind(seg)
                if kind is None:
                    raise DatasetItemError(f"{path}: {where}: segmentation must be polygons, RLE or uncompressed RLE"
                                           " (or pass with_masks=False for a box-only file)", path=path)
                if kind != "polygon" and list(seg["size"]) != [rec["height"], rec["width"]]:
                    raise DatasetItemError(f"{path}: {where}: RLE size {seg['size']} is not the image's "
                                           f"[height, width] [{rec['height']}, {rec['width']}]", path=path)
            rec["boxes"].append(box)
            rec["labels"].append(int(a["category_id"]))
            rec["anns"].append(a)
        super().__init__(records, categories, with_masks=with_masks)
        self.coco = coco_from_dict(_eval_dict(data))

    def _masks(self, record) -> np.ndarray:
        mask_util = require("pycocotools.mask", what="COCO masks")
        h, w = record["height"], record["width"]
        out = np.zeros((len(record["anns"]), h, w), dtype=bool)
        for k, a in enumerate(record["anns"]):
            seg = a["segmentation"]
            if isinstance(seg, list):  # polygons: one RLE per polygon, merged
                rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
            elif isinstance(seg["counts"], list):  # uncompressed RLE
                rle = mask_util.frPyObjects(seg, h, w)
            else:
                rle = seg
            try:
                out[k] = mask_util.decode(rle).astype(bool)
            except Exception as err:  # noqa: BLE001 - pycocotools raises bare exceptions on bad RLE strings
                raise DatasetItemError(f"{self.path}: annotation id {a.get('id')} (image {record['image_id']}): "
                                       f"cannot decode its segmentation: {err}", path=self.path) from None
        return out


def _eval_dict(data: dict) -> dict:
    """A copy of a COCO dict with the fields COCOeval needs filled in (``iscrowd``, ``area``, ``id``)."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    anns = []
    for i, a in enumerate(data["annotations"]):
        a = dict(a)
        a.setdefault("iscrowd", 0)
        a.setdefault("id", i + 1)
        if "area" not in a:
            seg = a.get("segmentation")
            if _segmentation_kind(seg) is not None:
                a["area"] = _seg_area(seg, *sizes[a["image_id"]])
            else:
                a["area"] = float(a["bbox"][2] * a["bbox"][3])
        anns.append(a)
    out = {k: v for k, v in data.items() if k != "annotations"}
    out.setdefault("info", {})
    out.setdefault("licenses", [])
    out["annotations"] = anns
    return out


def _seg_area(seg, h: int, w: int) -> float:
    mask_util = require("pycocotools.mask", what="COCO masks")
    if isinstance(seg, list):
        rle = mask_util.merge(mask_util.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_util.frPyObjects(seg, h, w)
    else:
        rle = seg
    return float(mask_util.area(rle))


# -- PASCAL VOC ----------------------------------------------------------------------------------------
