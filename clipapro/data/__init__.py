"""Dataset catalog and readers: PASCAL VOC 2012, PASCAL Context, COCO-Stuff, folders, Hugging Face.

Every dataset item is ``{"image": uint8 (H, W, 3) numpy RGB, "mask": int64 (H, W) numpy with 255 =
ignore, "id": str}``; class names and indices come from :func:`clipapro.prompts.get_class_set`.
Instance datasets (COCO instance JSON, VOC XML + SegmentationObject) have their own catalog
(:func:`build_instance_dataset`) and give :class:`InstanceSample` items (:mod:`clipapro.data.instances`).

Example:
    >>> from clipapro.data import build_dataset, list_datasets
    >>> "voc21" in list_datasets()
    True
"""

from .base import IGNORE_INDEX, DatasetItemError, read_image, read_label_png, reduce_zero_label
from .cocostuff import COCOStuffDataset, convert_stuffthingmaps, raw_to_train_ids
from .context import PascalContextDataset
from .folder import FolderDataset
from .hf import HFSegmentationDataset
from .instances import CocoInstances, InstanceSample
from .registry import (
    DatasetSpec,
    build_dataset,
    build_instance_dataset,
    get_dataset_spec,
    get_instance_dataset,
    list_datasets,
    list_instance_datasets,
    register_dataset,
    register_instance_dataset,
)
from .voc import VOCDataset
from .voc_instances import VocInstances

__all__ = [
    "IGNORE_INDEX", "COCOStuffDataset", "CocoInstances", "DatasetItemError", "DatasetSpec", "FolderDataset",
    "HFSegmentationDataset", "InstanceSample", "PascalContextDataset", "VOCDataset", "VocInstances", "build_dataset",
    "build_instance_dataset", "convert_stuffthingmaps", "get_dataset_spec", "get_instance_dataset", "list_datasets",
    "list_instance_datasets", "raw_to_train_ids", "read_image", "read_label_png", "reduce_zero_label",
    "register_dataset", "register_instance_dataset",
]
