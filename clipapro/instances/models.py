"""Box-supervised Mask R-CNN models: one registry, one factory.

``create_instance_model(name, num_classes)`` builds torchvision's Mask R-CNN (never downloading:
``weights=None, weights_backbone=None``) and swaps in two parts:

* :class:`~clipapro.instances.roi_heads.GuideTransform`: torchvision's resize/normalise transform
  that also hands the resized RGB image to the RoI heads (the guide of the APro targets);
* :class:`~clipapro.instances.roi_heads.BoxSupervisedRoIHeads`: torchvision's RoI heads with the
  mask loss replaced by the APro box loss (no mask labels read).

Everything else (RPN, box head, their losses, inference) is torchvision's. Models:

* ``maskrcnn_resnet50_fpn``, ``maskrcnn_resnet50_fpn_v2``: torchvision's builders. With
  ``backbone_weights`` (a local ImageNet ResNet-50 ``state_dict`` file, loaded with
  ``weights_only=True``) the backbone is set up as torchvision does for pretrained weights: v1 with
  frozen batch norm, and only the last ``trainable_backbone_layers`` (default 3) stages trained.
* ``maskrcnn_tiny``: a 3-stage conv backbone (16/32/64 channels) with a 32-channel FPN and small
  heads, for tests and smoke runs on a CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from clipapro._validate import check_int
from clipapro.instances.roi_heads import BoxSupervisedRoIHeads, GuideTransform

__all__ = ["INSTANCE_MODELS", "check_instance_model", "create_instance_model", "register_instance_model"]

INSTANCE_MODELS: dict[str, object] = {}


def register_instance_model(name: str):
    """Decorator: ``@register_instance_model("name")`` over ``builder(num_classes, **options) -> MaskRCNN``."""

    def wrap(fn):
        if name in INSTANCE_MODELS:
            raise ValueError(f"instance model {name!r} is already registered")
        INSTANCE_MODELS[name] = fn
        return fn

    return wrap


def check_instance_model(name: str) -> str:
    """ValueError naming the known models when ``name`` is not one of them."""
    if name not in INSTANCE_MODELS:
        raise ValueError(f"model must be one of {sorted(INSTANCE_MODELS)}, got {name!r}")
    return name


def create_instance_model(name: str, num_classes: int, *, backbone_weights=None, min_size: int = 800,
                          max_size: int = 1333, mask_loss_options: dict | None = None, **options):
    """A box-supervised Mask R-CNN.

    Args:
        name: a key of :data:`INSTANCE_MODELS`.
        num_classes: object classes, background excluded (the model predicts labels 1..num_classes).
        backbone_weights: optional local file with an ImageNet ResNet-50 ``state_dict`` (resnet models).
        min_size, max_size: torchvision's input resize (shorter side, cap on the longer side).
        mask_loss_options: options of :class:`BoxSupervisedRoIHeads` (loss weights, propagation options,
            ``roi_size``).
        options: further keywords of the builder (e.g. ``trainable_backbone_layers``,
            ``box_detections_per_img``).

    Returns:
        a ``torchvision.models.detection.MaskRCNN`` whose training loss dict is torchvision's, with
        ``loss_mask`` the APro box loss; ``model(images)`` in eval mode is torchvision's inference.

    Example:
        >>> model = create_instance_model("maskrcnn_tiny", 1, min_size=64, max_size=64)
        >>> type(model.roi_heads).__name__
        'BoxSupervisedRoIHeads'
    """
    check_instance_model(name)
    num_classes = check_int(num_classes, "num_classes", min_value=1)
    min_size = check_int(min_size, "min_size", min_value=16)
    max_size = check_int(max_size, "max_size", min_value=min_size)
    if backbone_weights is not None:
        path = Path(backbone_weights)
        if not path.is_file():
            raise FileNotFoundError(f"backbone_weights file not found: {path}")
        if name == "maskrcnn_tiny":
            raise ValueError("backbone_weights: maskrcnn_tiny has no pretrained backbone; use a resnet50 model")
    model = INSTANCE_MODELS[name](num_classes + 1, backbone_weights=backbone_weights, min_size=min_size,
                                  max_size=max_size, **options)
    t = model.transform
    model.transform = GuideTransform(t.min_size, t.max_size, t.image_mean, t.image_std,
                                     size_divisible=t.size_divisible, fixed_size=t.fixed_size)
    model.roi_heads = BoxSupervisedRoIHeads.from_roi_heads(model.roi_heads, **(mask_loss_options or {}))
    return model


def load_backbone_weights(body: nn.Module, path) -> None:
    """Load an ImageNet ResNet ``state_dict`` (``fc.*`` ignored) into ``body``; ValueError on a mismatch."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - one message for every way a file can be unreadable
        raise ValueError(f"cannot read backbone_weights {path}: {' '.join(str(err).split())[:300]}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"backbone_weights {path} is not a state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    own = body.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"backbone_weights {path} is not a ResNet-50 state_dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"backbone_weights {path}: shape mismatch at {bad[:5]}")
    body.load_state_dict(state)


def _pretrained_resnet_regime(body: nn.Module, trainable_layers: int, frozen_bn: bool) -> None:
    """torchvision's set-up of a pretrained ResNet body: frozen batch norm (v1) and frozen early stages."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    if frozen_bn:
        for parent in list(body.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.BatchNorm2d):
                    frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(frozen, key).copy_(getattr(child, key).detach())
                    setattr(parent, child_name, frozen)
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers] + (["bn1"] if trainable_layers == 5
                                                                                   else [])
    for pname, p in body.named_parameters():
        p.requires_grad_(any(pname.startswith(prefix) for prefix in train))


def _resnet_maskrcnn(builder, num_classes, *, backbone_weights, frozen_bn, trainable_backbone_layers=None,
                     **kwargs):
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    if backbone_weights is not None:
        layers = 3 if trainable_backbone_layers is None else check_int(
            trainable_backbone_layers, "trainable_backbone_layers", min_value=0, max_value=5)
        load_backbone_weights(model.backbone.body, backbone_weights)
        _pretrained_resnet_regime(model.backbone.body, layers, frozen_bn)
    elif trainable_backbone_layers not in (None, 5):
        raise ValueError("trainable_backbone_layers: a randomly initialised backbone trains all 5 stages "
                         "(give backbone_weights to freeze some)")
    return model


@register_instance_model("maskrcnn_resnet50_fpn")
def _maskrcnn_resnet50_fpn(num_classes, *, backbone_weights=None, **kwargs):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    return _resnet_maskrcnn(maskrcnn_resnet50_fpn, num_classes, backbone_weights=backbone_weights, frozen_bn=True,
                            **kwargs)


@register_instance_model("maskrcnn_resnet50_fpn_v2")
def _maskrcnn_resnet50_fpn_v2(num_classes, *, backbone_weights=None, **kwargs):
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    return _resnet_maskrcnn(maskrcnn_resnet50_fpn_v2, num_classes, backbone_weights=backbone_weights,
                            frozen_bn=False, **kwargs)


class _TinyBody(nn.Sequential):
    """Three stride-2x conv stages after a stride-2 stem: features at 1/4, 1/8, 1/16."""

    def __init__(self, widths=(16, 32, 64)):
        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        super().__init__(OrderedDict([("stem", block(3, widths[0])), ("s1", block(widths[0], widths[0])),
                                      ("s2", block(widths[0], widths[1])), ("s3", block(widths[1], widths[2]))]))


@register_instance_model("maskrcnn_tiny")
def _maskrcnn_tiny(num_classes, *, backbone_weights=None, **kwargs):
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    widths, ch = (16, 32, 64), 32
    backbone = BackboneWithFPN(_TinyBody(widths), {"s1": "0", "s2": "1", "s3": "2"}, list(widths), ch)
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    names = ["0", "1", "2"]
    defaults = {"rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64, "rpn_pre_nms_top_n_train": 200,
                "rpn_post_nms_top_n_train": 100, "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50}
    return MaskRCNN(backbone, None, rpn_anchor_generator=anchors,
                    box_roi_pool=MultiScaleRoIAlign(names, 7, 2), box_head=TwoMLPHead(ch * 49, 64),
                    box_predictor=FastRCNNPredictor(64, num_classes),
                    mask_roi_pool=MultiScaleRoIAlign(names, 14, 2), mask_head=MaskRCNNHeads(ch, [ch, ch], 1),
                    mask_predictor=MaskRCNNPredictor(ch, ch, num_classes), **{**defaults, **kwargs})
