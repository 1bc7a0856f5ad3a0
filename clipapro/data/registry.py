"""The dataset catalog: one plain dict from benchmark name to a :class:`DatasetSpec`.

``build_dataset(name, root, split=...)`` is the one entry point; ``hf:<name or folder>`` builds a
Hugging Face dataset and ``folder`` a generic images/ + masks/ folder.

Evaluation protocol per benchmark (``DatasetSpec.protocol``): the conventions behind the published
training-free CLIP numbers (SCLIP, NACLIP, ClearCLIP; mmsegmentation 1.x test pipelines, e.g. SCLIP's
``configs/cfg_voc21.py``: ``Resize(scale=(2048, 336), keep_ratio=True)``, i.e. short side 336, and
sliding-window inference with 224 crops, stride 112). Predictions are always scored at the original
label resolution (mmsegmentation resizes logits back before ``IoUMetric``), 255 pixels never count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cocostuff import COCOStuffDataset
from .context import PascalContextDataset
from .folder import FolderDataset
from .hf import HFSegmentationDataset
from .voc import VOCDataset

__all__ = ["DatasetSpec", "build_dataset", "build_instance_dataset", "get_dataset_spec", "get_instance_dataset",
           "list_datasets", "list_instance_datasets", "register_dataset", "register_instance_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """A catalog entry: how to build the dataset and how its benchmark is evaluated."""

    name: str
    factory: object  # callable(root, *, split, **options) -> dataset
    class_set: str | None
    default_split: str = "val"
    short_side: int | None = 336  # test-time resize of the short side (keep ratio)
    crop: int | None = 224  # sliding-window crop; None = whole image
    stride: int | None = 112
    protocol: str = ""
    options: dict = field(default_factory=dict)


_VOC_PROTOCOL = ("VOC2012 val (1449 images); short side 336, slide 224/112; void border 255 ignored{}; "
                 "scored at original resolution (SCLIP/NACLIP cfg_voc{})")
_CTX_PROTOCOL = ("PASCAL Context val (5105 images, mmseg layout); short side 336, slide 224/112; {} "
                 "(SCLIP/NACLIP cfg_context{}); scored at original resolution")

_DATASETS: dict[str, DatasetSpec] = {
    "voc21": DatasetSpec(
        "voc21", lambda root, split, **kw: VOCDataset(root, split=split, background=True, **kw), "voc21",
        protocol=_VOC_PROTOCOL.format("", "21")),
    "voc20": DatasetSpec(
        "voc20", lambda root, split, **kw: VOCDataset(root, split=split, background=False, **kw), "voc20",
        protocol=_VOC_PROTOCOL.format("; background -> ignore (reduce_zero_label)", "20")),
    "context60": DatasetSpec(
        "context60", lambda root, split, **kw: PascalContextDataset(root, split=split, background=True, **kw),
        "context60", protocol=_CTX_PROTOCOL.format("background is class 0", "60")),
    "context59": DatasetSpec(
        "context59",
        lambda root, split, **kw: PascalContextDataset(root, split=split, background=False, **kw),
        "context59", protocol=_CTX_PROTOCOL.format("background -> ignore (reduce_zero_label)", "59")),
    "cocostuff171": DatasetSpec(
        "cocostuff171", lambda root, split, **kw: COCOStuffDataset(root, split=split, **kw), "cocostuff171",
        short_side=448,
        protocol=("COCO-Stuff 164k val2017 (5000 images), labelTrainIds 0..170, 255 ignored; short side 448, "
                  "slide 224/112 (SCLIP cfg_coco_stuff164k); scored at original resolution")),
    "folder": DatasetSpec(
        "folder", lambda root, split, **kw: FolderDataset(root, split=split, **kw), None, default_split="",
        protocol="generic images/ + masks/ folder; 255 ignored; pass classes="),
}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a catalog entry."""
    _DATASETS[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    """Names in the catalog (``hf:<name>`` is accepted too)."""
    return sorted(_DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The catalog entry for ``name``; ``hf:...`` gets a generic entry."""
    if name.startswith("hf:"):
        return DatasetSpec(name, None, None, default_split="validation", protocol="Hugging Face dataset")
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}: use one of {list_datasets()} or 'hf:<name or folder>'")
    return _DATASETS[name]


def build_dataset(name: str, root=None, *, split: str | None = None, **options):
    """Build a dataset by catalog name; items are ``{"image", "mask", "id"}`` (see :mod:`clipapro.data.base`).

    ``options`` go to the reader (``classes=``, ``mask_dir=``, ``image_column=`` ...). For ``hf:<spec>``,
    ``root`` is unused and ``classes`` is required.

    Example:
        >>> ds = build_dataset("voc21", "data/VOCdevkit/VOC2012", split="val")  # doctest: +SKIP
        >>> ds.classes[:3]  # doctest: +SKIP
        ('background', 'aeroplane', 'bicycle')
    """
    spec = get_dataset_spec(name)
    split = spec.default_split if split is None else split
    if name.startswith("hf:"):
        if "classes" not in options:
            raise ValueError(f"{name}: give classes= (a class-set name, file or comma list)")
        return HFSegmentationDataset(name[3:], split=split, **options)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder")
    if name == "folder" and "classes" not in options:
        raise ValueError("the folder dataset needs classes= (a class-set name, file or comma list)")
    return spec.factory(root, split, **options)


# -- instance datasets (InstanceSample items; clipapro.data.instances) ------------------------------------
# A sibling catalog, not a kind= of the one above: its items, options and evaluation (mask AP through
# ds.coco) differ from the semantic datasets'. Factories take (root, split, **options).
def _coco_json(root, split, *, images=None, **kw):
    from pathlib import Path

    from .instances import CocoInstances

    root = Path(root)
    return CocoInstances(root, images, **kw)


def _coco2017(root, split, **kw):
    from pathlib import Path

    from .instances import CocoInstances

    root = Path(root)
    return CocoInstances(root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017", **kw)


def _voc_instances(root, split, **kw):
    from .voc_instances import VocInstances

    return VocInstances(root, split, **kw)


def _pennfudan(root, split, **kw):
    from pathlib import Path

    from .instances import CocoInstances

    root = Path(root)
    return CocoInstances(root / "instances.json", root / "images", **kw)


_INSTANCE_DATASETS: dict[str, DatasetSpec] = {
    "coco": DatasetSpec("coco", _coco_json, None, default_split="", short_side=None, crop=None, stride=None,
                        protocol="any COCO instance JSON: root = the JSON file, images= the image folder "
                                 "(None: annotations only)"),
    "coco2017": DatasetSpec("coco2017", _coco2017, None, default_split="val", short_side=None, crop=None,
                            stride=None, protocol="COCO 2017: root/annotations/instances_<split>2017.json + "
                                              "root/<split>2017/; mask AP via pycocotools"),
    "voc": DatasetSpec("voc", _voc_instances, None, default_split="val", short_side=None,
                                 crop=None, stride=None,
                                 protocol="VOC2012 Annotations/*.xml boxes + SegmentationObject PNGs (val: 1449 "
                                          "images); mask AP via pycocotools"),
    "pennfudan": DatasetSpec("pennfudan", _pennfudan, None, default_split="", short_side=None, crop=None,
                             stride=None, protocol="../shared/data/pennfudan: instances.json + images/ (113 photos, "
                                                   "1 class)"),
}


def register_instance_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) an instance-dataset entry (``spec.factory(root, split, **options)``)."""
    _INSTANCE_DATASETS[spec.name] = spec
    return spec


def list_instance_datasets() -> list[str]:
    """Names in the instance-dataset catalog."""
    return sorted(_INSTANCE_DATASETS)


def get_instance_dataset(name: str) -> DatasetSpec:
    """The instance-dataset entry for ``name``."""
    if name not in _INSTANCE_DATASETS:
        raise ValueError(f"unknown instance dataset {name!r}: use one of {list_instance_datasets()}")
    return _INSTANCE_DATASETS[name]


def build_instance_dataset(name: str, root, *, split: str | None = None, **options):
    """Build an instance dataset by catalog name; items are :class:`~clipapro.data.instances.InstanceSample`.

    Example:
        >>> ds = build_instance_dataset("pennfudan", "../shared/data/pennfudan")  # doctest: +SKIP
        >>> len(ds), ds.categories  # doctest: +SKIP
        (113, [{'id': 1, 'name': 'pedestrian'}])
    """
    spec = get_instance_dataset(name)
    if root is None:
        raise ValueError(f"instance dataset {name!r} needs a root")
    return spec.factory(root, spec.default_split if split is None else split, **options)
