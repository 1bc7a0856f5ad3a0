"""A student initialised from the CLIP image tower: the MaskCLIP dense path, trainable, with a 1x1
classifier initialised from the text embeddings of the class prompts.

Registered as ``clip_vit`` in :mod:`clipapro.pseudo.student`. Only the image tower is kept (the text
tower is used once to initialise the classifier, then dropped), so every parameter gets a gradient
and DistributedDataParallel needs no ``find_unused_parameters``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CLIPDenseStudent"]


class CLIPDenseStudent(nn.Module):
    """CLIP ViT tower -> dense embeddings (B, D, h, w), L2-normalised -> 1x1 conv -> logits (B, K, H, W).

    Args:
        num_classes: K.
        clip_model: open_clip model name or model-config JSON (see :func:`clipapro.clip.create_model`).
        clip_weights: local checkpoint or tag of the CLIP weights; None builds random weights.
        classes: class set (spec, or list of ``[name, [prompt names]]``) whose text embeddings
            initialise the classifier (times ``logit_scale``); None: random classifier.
        templates: prompt templates for that initialisation.
        model_cfg: an open_clip model config dict (tests: a tiny tower).

    Input: (B, 3, H, W) normalised with :attr:`image_mean` / :attr:`image_std` (the
    :class:`~clipapro.pseudo.student.Student` wrapper does it). Output logits at the input size.

    Example:
        >>> cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32,
        ...        "layers": 2, "head_width": 16}, "text_cfg": {"width": 32, "heads": 2, "layers": 1}}
        >>> net = CLIPDenseStudent(2, clip_model="tiny", model_cfg=cfg, classes="cat, dog",
        ...                        templates="single")
        >>> net(torch.randn(1, 3, 30, 45)).shape
        torch.Size([1, 2, 30, 45])
    """

    def __init__(self, num_classes: int, *, clip_model: str = "ViT-B-16", clip_weights=None, classes=None,
                 templates="imagenet80", model_cfg=None, quick_gelu: bool = False, logit_scale: float = 40.0):
        super().__init__()
        from clipapro.clip import build_text_classifier, create_model

        dense = create_model(clip_model, pretrained=clip_weights, random_init=clip_weights is None,
                             model_cfg=model_cfg, quick_gelu=quick_gelu)
        if dense.backend != "open_clip" or dense.arch != "vit":
            raise ValueError(f"clip_vit student needs an open_clip ViT, got {dense.backend}/{dense.arch}")
        self.visual = dense.clip.visual
        self.patch_size = dense.patch_size
        self.image_mean, self.image_std = dense.image_mean, dense.image_std
        self.head = nn.Conv2d(dense.embed_dim, num_classes, 1)
        if classes is not None:
            clf = build_text_classifier(dense, classes, templates=templates)
            if clf.num_classes != num_classes:
                raise ValueError(f"classes give {clf.num_classes} classes, the student has {num_classes}")
            # a class with several prompt names: average its names' embeddings for the one filter
            index = clf.class_index.long()
            text = torch.zeros(num_classes, clf.weights.shape[1]).index_add_(0, index, clf.weights.float())
            text = F.normalize(text, dim=1)
            with torch.no_grad():
                self.head.weight.copy_(logit_scale * text[:, :, None, None])
                self.head.bias.zero_()
        del dense  # the text tower is not part of the student

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        from clipapro.clip.dense import vit_dense
        from clipapro.clip.towers import open_clip_vit_tower

        h, w = pixels.shape[-2:]
        ph, pw = (-h) % self.patch_size, (-w) % self.patch_size
        padded = F.pad(pixels, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        feats = vit_dense(open_clip_vit_tower(self.visual), padded)  # MaskCLIP path, with gradients
        logits = self.head(F.normalize(feats.float(), dim=1))
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]
