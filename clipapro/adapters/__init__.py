"""Box- and point/scribble-supervised adapters on the propagation core.

- :mod:`.boxes`: :func:`box_apro_targets` and :class:`BoxAProLoss` (instance masks from boxes).
- :mod:`.points`: :class:`PartialCrossEntropy` and :class:`AProSoftLabelLoss` (semantic masks from
  points/scribbles).
- :mod:`.labels`: scribble PNG and point JSON readers.
- :mod:`.tools`: box -> mask and scribble -> mask with no trained network (``box2mask`` /
  ``scribble2mask`` commands).
"""

from clipapro.adapters.boxes import BoxAProLoss, box_apro_targets, box_masks, check_boxes
from clipapro.adapters.labels import (
    Point,
    points_to_labels,
    read_points_json,
    read_scribble_png,
    write_points_json,
)
from clipapro.adapters.points import AProSoftLabelLoss, PartialCrossEntropy
from clipapro.adapters.tools import box_to_instances, box_to_probs, scribble_to_mask, scribble_to_probs

__all__ = [
    "AProSoftLabelLoss", "BoxAProLoss", "PartialCrossEntropy",
    "Point",
    "box_apro_targets", "box_masks", "box_to_instances", "box_to_probs", "check_boxes", "points_to_labels",
    "read_points_json", "read_scribble_png", "scribble_to_mask", "scribble_to_probs", "write_points_json",
]
