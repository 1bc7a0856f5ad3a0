"""Box-supervised instance segmentation: torchvision's Mask R-CNN with the APro box loss on its mask head.

- :mod:`.models`: the model registry and :func:`create_instance_model` (``maskrcnn_resnet50_fpn``,
  ``maskrcnn_resnet50_fpn_v2``, ``maskrcnn_tiny``; never downloads).
- :mod:`.roi_heads`: :class:`BoxSupervisedRoIHeads` (the mask loss swapped) and :class:`GuideTransform`.
- :mod:`.predict`: :func:`predict_instances`, :func:`filled_box_masks` (the baseline) and
  :func:`evaluate_instance_model` (COCO mask AP of both).
- :mod:`.train`: :func:`train_instances`, resumable and DDP-ready (``clipapro train-instances``).

The loss itself is model-agnostic and lives in :mod:`clipapro.adapters.mask_loss`.
"""

from clipapro.instances.models import INSTANCE_MODELS, create_instance_model, register_instance_model
from clipapro.instances.predict import InstancePrediction, evaluate_instance_model, filled_box_masks, predict_instances
from clipapro.instances.roi_heads import BoxSupervisedRoIHeads, GuideTransform

__all__ = ["INSTANCE_MODELS", "BoxSupervisedRoIHeads", "GuideTransform", "InstancePrediction", "create_instance_model",
           "evaluate_instance_model", "filled_box_masks", "predict_instances", "register_instance_model"]
