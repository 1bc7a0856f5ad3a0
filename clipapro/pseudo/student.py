"""Student segmentation networks: one plain-dict registry of factories, one entry point.

Every student maps a normalised image batch (B, 3, H, W) to class logits (B, K, H, W) at the input
resolution. The torchvision architectures are built with ``weights=None`` (no download); pass
``backbone_weights`` (a local ``.pth`` state dict of the torchvision backbone, e.g. the ImageNet
ResNet-50 file) to start from a pretrained backbone, as MaskCLIP+ does.

Names: ``deeplabv3_resnet50``, ``deeplabv3_resnet101`` (the default of ``clipapro train``: MaskCLIP+ trains DeepLab),
``deeplabv3_mobilenet_v3_large``, ``fcn_resnet50``, ``fcn_resnet101``, ``lraspp_mobilenet_v3_large``,
``clip_vit`` (the CLIP image tower with the MaskCLIP dense path and a classifier initialised from
the class prompts' text embeddings; ``backbone_weights`` = the CLIP checkpoint, options ``clip_model``,
``classes``, ``templates``), and ``tiny_fcn`` (a few convolutions, for tests and smoke runs).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "create_student", "list_students", "register_student"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Student(nn.Module):
    """Wraps a segmentation network: uint8-range-free float input in [0, 1] -> normalised -> logits.

    Input (B, 3, H, W) RGB in [0, 1]; output (B, K, H, W) logits (the torchvision ``"out"`` head).
    """

    def __init__(self, net: nn.Module, *, name: str, num_classes: int):
        super().__init__()
        self.net = net
        self.name = name
        self.num_classes = num_classes
        # ImageNet statistics for torchvision backbones; a CLIP tower brings its own
        mean, std = getattr(net, "image_mean", IMAGENET_MEAN), getattr(net, "image_std", IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net((images - self.mean) / self.std)
        out = out["out"] if isinstance(out, dict) else out
        if out.shape[-2:] != images.shape[-2:]:
            out = nn.functional.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return out


def _torchvision(builder_name: str):
    def build(num_classes: int, *, backbone_weights=None, **kw) -> nn.Module:
        from clipapro._deps import require

        segmentation = require("torchvision.models.segmentation", what=f"student {builder_name!r}")
        builder = getattr(segmentation, builder_name)
        if not builder_name.startswith("lraspp"):
            kw.setdefault("aux_loss", False)
        net = builder(weights=None, weights_backbone=None, num_classes=num_classes, **kw)
        if backbone_weights is not None:
            _load_backbone(net, backbone_weights)
        return net

    return build


def _load_backbone(net: nn.Module, path) -> None:
    """Load a torchvision classification state dict into ``net.backbone`` (heads are skipped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    backbone = net.backbone
    own = backbone.state_dict()
    # IntermediateLayerGetter keeps ResNet names; MobileNet's backbone is ``features`` re-indexed
    mapped = {k.removeprefix("features."): v for k, v in state.items()}
    usable = {k: v for k, v in {**state, **mapped}.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"backbone weights {path} share no tensor with the student backbone")
    backbone.load_state_dict(usable, strict=False)


class TinyFCN(nn.Module):
    """A few 3x3 convolutions with one stride-2 stage: a quick student for tests and smoke runs."""

    def __init__(self, num_classes: int, *, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _tiny(num_classes: int, *, backbone_weights=None, width: int = 16) -> nn.Module:
    if backbone_weights is not None:
        raise ValueError("tiny_fcn has no pretrained backbone")
    return TinyFCN(num_classes, width=width)


def _clip_vit(num_classes: int, *, backbone_weights=None, **kw) -> nn.Module:
    from clipapro.pseudo.clip_student import CLIPDenseStudent

    return CLIPDenseStudent(num_classes, clip_weights=backbone_weights, **kw)


_STUDENTS = {
    "deeplabv3_resnet50": _torchvision("deeplabv3_resnet50"),
    "deeplabv3_resnet101": _torchvision("deeplabv3_resnet101"),
    "deeplabv3_mobilenet_v3_large": _torchvision("deeplabv3_mobilenet_v3_large"),
    "fcn_resnet50": _torchvision("fcn_resnet50"),
    "fcn_resnet101": _torchvision("fcn_resnet101"),
    "lraspp_mobilenet_v3_large": _torchvision("lraspp_mobilenet_v3_large"),
    "tiny_fcn": _tiny,
    "clip_vit": _clip_vit,
}

def register_student(name: str, factory) -> None:
    """Add ``factory(num_classes, *, backbone_weights=None, **kw) -> nn.Module`` under ``name``."""
    _STUDENTS[name] = factory


def list_students() -> list[str]:
    return sorted(_STUDENTS)


def check_student(name: str) -> str:
    """Raise ValueError naming the registry when ``name`` is not a registered student."""
    if name not in _STUDENTS:
        raise ValueError(f"unknown student {name!r}: use one of {list_students()}")
    return name


def create_student(name: str, num_classes: int, *, backbone_weights=None, **kw) -> Student:
    """Build the student ``name`` for ``num_classes`` classes.

    Args:
        name: a key of the registry (:func:`list_students`).
        num_classes: K, the number of output channels.
        backbone_weights: optional local path of a pretrained backbone state dict.

    Example:
        >>> m = create_student("tiny_fcn", 3)
        >>> m(torch.rand(2, 3, 32, 48)).shape
        torch.Size([2, 3, 32, 48])
    """
    if name not in _STUDENTS:
        raise ValueError(f"unknown student {name!r}: use one of {list_students()}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return Student(_STUDENTS[name](num_classes, backbone_weights=backbone_weights, **kw),
                   name=name, num_classes=num_classes)
