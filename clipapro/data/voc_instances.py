"""PASCAL VOC 2012 instances: ``Annotations/*.xml`` boxes + ``SegmentationObject`` / ``SegmentationClass`` masks.

Samples, checks and the in-memory COCO ground truth follow :mod:`clipapro.data.instances`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from clipapro._deps import require

from .base import DatasetItemError, read_label_png, read_split_file
from .instances import InstanceDataset, _check_box, coco_from_dict
from .voc import find_dataset_root

__all__ = ["VOC_CATEGORIES", "VocInstances", "instances_to_coco_dict"]

VOC_CATEGORIES = [{"id": i + 1, "name": n} for i, n in enumerate((
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"))]


def _voc_image_id(name: str, index: int) -> int:
    """``2007_000032`` -> 2007000032 (stable across splits); other names -> position + 1."""
    return int(name.replace("_", "")) if re.fullmatch(r"\d+(_\d+)*", name) and len(name) < 19 else index + 1


def _parse_voc_xml(path: Path, name_to_id: dict) -> dict:

    if not path.is_file():
        raise FileNotFoundError(f"VOC annotation not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetItemError(f"VOC annotation {path} is not valid XML: {err}", path=path) from None

    def number(node, tag, where):
        el = node.find(tag)
        try:
            return float(el.text)
        except (AttributeError, TypeError, ValueError):
            raise DatasetItemError(f"{path}: {where}: missing or non-numeric <{tag}>", path=path) from None

    size = root.find("size")
    if size is None:
        raise DatasetItemError(f"{path}: missing <size>", path=path)
    width, height = int(number(size, "width", "size")), int(number(size, "height", "size"))
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object {k + 1}"
        cls = (obj.findtext("name") or "").strip()
        if cls not in name_to_id:
            raise DatasetItemError(f"{path}: {where}: unknown class {cls!r} (VOC classes: {sorted(name_to_id)})",
                                   path=path)
        bb = obj.find("bndbox")
        if bb is None:
            raise DatasetItemError(f"{path}: {where}: missing <bndbox>", path=path)
        # VOC boxes are 1-based inclusive pixel indices: (1, W) covers the image, i.e. edges (0, W)
        box = [number(bb, "xmin", where) - 1, number(bb, "ymin", where) - 1, number(bb, "xmax", where),
               number(bb, "ymax", where)]
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append({"box": box, "label": name_to_id[cls], "difficult": difficult, "where": where})
    return {"width": width, "height": height, "objects": objects}


class VocInstances(InstanceDataset):
    """PASCAL VOC 2012 instances: detection boxes from ``Annotations/*.xml``, masks from
    ``SegmentationObject/*.png`` (instance k = the k-th ``<object>`` of the XML, as the devkit orders
    them; 255 = void) checked against ``SegmentationClass/*.png``.

    Args:
        root: ``VOCdevkit/VOC2012`` (or a folder above it).
        split: ``ImageSets/Segmentation/<split>.txt``; with ``with_masks=False`` the detection list
            ``ImageSets/Main/<split>.txt`` is used when it exists.
        with_masks: read the instance masks (only the segmentation split has them).

    Category ids are 1..20 in VOC order (:data:`VOC_CATEGORIES`); ``difficult`` objects are kept (as
    detectron2's VOC loader does). ``image_id`` is the name without underscores (2007_000032 ->
    2007000032). An XML object with no pixels in SegmentationObject is a crowd (ignored) entry of
    ``ds.coco``.

    Example:
        >>> ds = VocInstances("data/VOCdevkit/VOC2012", split="val")  # doctest: +SKIP
        >>> ds[0].labels  # doctest: +SKIP
        tensor([1, 1, 15, 15])
    """

    name = "voc"

    def __init__(self, root, split: str = "val", *, with_masks: bool = True):
        base = find_dataset_root(root, "Annotations", ("VOC2012", "VOCdevkit/VOC2012"))
        self.base = base
        seg_list, main_list = (base / "ImageSets" / d / f"{split}.txt" for d in ("Segmentation", "Main"))
        split_file = seg_list if with_masks or not main_list.is_file() else main_list
        if not split_file.is_file():
            raise FileNotFoundError(f"VOC split file not found: {split_file}")
        if with_masks:
            for d in ("SegmentationObject", "SegmentationClass"):
                if not (base / d).is_dir():
                    raise FileNotFoundError(f"VOC {d} folder not found: {base / d} (or pass with_masks=False)")
        self.name = f"voc/{split}"
        name_to_id = {c["name"]: c["id"] for c in VOC_CATEGORIES}
        records = []
        for i, stem in enumerate(read_split_file(split_file)):
            xml = base / "Annotations" / f"{stem}.xml"
            ann = _parse_voc_xml(xml, name_to_id)
            image = base / "JPEGImages" / f"{stem}.jpg"
            if not image.is_file():
                raise FileNotFoundError(f"{split_file}: sample {stem!r}: image file not found: {image}")
            boxes = [_check_box(o["box"], ann["width"], ann["height"], o["where"], xml) for o in ann["objects"]]
            records.append({"image_id": _voc_image_id(stem, i), "file_name": f"JPEGImages/{stem}.jpg", "path": image,
                            "width": ann["width"], "height": ann["height"], "boxes": boxes, "stem": stem,
                            "labels": [o["label"] for o in ann["objects"]], "xml": xml})
        super().__init__(records, VOC_CATEGORIES, with_masks=with_masks)
        self._coco = None

    def _masks(self, record) -> np.ndarray:
        obj_png = self.base / "SegmentationObject" / f"{record['stem']}.png"
        cls_png = self.base / "SegmentationClass" / f"{record['stem']}.png"
        inst, cls = read_label_png(obj_png), read_label_png(cls_png)
        h, w = record["height"], record["width"]
        for png, arr in ((obj_png, inst), (cls_png, cls)):
            if arr.shape != (h, w):
                raise DatasetItemError(f"{png} is {arr.shape[1]}x{arr.shape[0]} (WxH) but {record['xml']} says "
                                       f"{w}x{h}", path=png)
        n = len(record["labels"])
        present = np.unique(inst[(inst != 0) & (inst != 255)])
        if present.size and present.max() > n:
            raise DatasetItemError(f"{obj_png} holds instance {int(present.max())} but {record['xml']} lists only "
                                   f"{n} objects", path=obj_png)
        out = np.zeros((n, h, w), dtype=bool)
        for k in range(n):
            out[k] = inst == k + 1
            if out[k].any():
                values, counts = np.unique(cls[out[k]], return_counts=True)
                major = int(values[counts.argmax()])
                if major != record["labels"][k]:
                    raise DatasetItemError(
                        f"{obj_png}: instance {k + 1} is class {major} in {cls_png.name} but object {k + 1} of "
                        f"{record['xml']} is class {record['labels'][k]}", path=obj_png)
        return out

    @property
    def coco(self):
        """The ground truth as a ``pycocotools`` COCO object (built on first use: it reads every mask)."""
        if self._coco is None:
            self._coco = coco_from_dict(instances_to_coco_dict(self))
        return self._coco


def instances_to_coco_dict(ds: InstanceDataset) -> dict:
    """COCO ground-truth dict (RLE segmentations) of a dataset with masks; empty masks become crowd
    (ignored) entries, so an object the PNG does not segment is neither a hit nor a miss."""
    mask_util = require("pycocotools.mask", what="COCO ground truth")
    images, anns = [], []
    for r in ds.records:
        images.append({"id": r["image_id"], "file_name": r["file_name"], "width": r["width"], "height": r["height"]})
        masks = ds._masks(r)
        for k, (box, label) in enumerate(zip(r["boxes"], r["labels"], strict=True)):
            rle = mask_util.encode(np.asfortranarray(masks[k].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            area = float(masks[k].sum())
            anns.append({"id": len(anns) + 1, "image_id": r["image_id"], "category_id": label, "segmentation": rle,
                         "area": area, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                         "iscrowd": int(area == 0)})
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": list(ds.categories)}
