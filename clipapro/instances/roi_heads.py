"""Mask R-CNN's RoI heads with the APro box loss on the mask head, and the transform that feeds it.

torchvision calls ``maskrcnn_loss`` (mask labels projected into each positive RoI, binary
cross-entropy) inside ``RoIHeads.forward``. :class:`BoxSupervisedRoIHeads` runs the same training
path from torchvision's own parts (``select_training_samples``, the box RoI pool/head/predictor,
``fastrcnn_loss``, the mask RoI pool/head/predictor) and scores the masks of the positive RoIs with
:func:`clipapro.adapters.mask_loss.box_supervised_mask_loss` instead: each RoI's guide is the
resized input image cropped to the RoI (RoIAlign at the mask resolution), its box mask is the matched
ground-truth box drawn in the RoI's frame. Targets need ``boxes`` and ``labels`` only (plus the
``guide`` the transform adds); ``masks`` are never read. Inference is torchvision's, unchanged.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from clipapro._validate import check_int, check_option_names

__all__ = ["BoxSupervisedRoIHeads", "GuideTransform"]

#: Loss defaults of the RoI heads where they differ from the full-photo ones (box_apro_targets,
#: box_supervised_mask_loss). A 42 x 42 RoI frame is coarser than a photo, its neighbour distances
#: larger, so the tree needs a wider zeta_g (scripts/roi_loss_study.py, free logits per RoI on
#: Penn-Fudan, mIoU of the thresholded masks: context 1 -> 54.9, context 2 -> 50.5, context 2 +
#: zeta_g 0.02 -> 57.0, context 1.5 + zeta_g 0.02 -> 58.9; filled box 54.4). The local term is off:
#: in training (README, Penn-Fudan, maskrcnn_tiny) it shrank every mask to a thin cross that still
#: satisfies the projection term (mean probability 0.1 inside the box, mask AP 0.0 at step 500),
#: while projection + global reached mask AP 6.8 against 1.3 for the filled boxes. Turn it back on
#: with ``local_weight=1`` (``--mask-loss-opt local_weight=1``).
ROI_APRO_DEFAULTS = {"zeta_g": 0.02, "local_weight": 0.0}

#: The logit of the mask outside its RoI (sigmoid = 2e-9): background.
_BACKGROUND_LOGIT = -20.0


def _grow(rois: torch.Tensor, fraction: float) -> torch.Tensor:
    """(R, 4) boxes grown by ``fraction`` of their width/height on each side."""
    w = (rois[:, 2] - rois[:, 0]) * fraction
    h = (rois[:, 3] - rois[:, 1]) * fraction
    return torch.stack([rois[:, 0] - w, rois[:, 1] - h, rois[:, 2] + w, rois[:, 3] + h], 1)


class GuideTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform; in training each target also gets ``guide``: the resized
    input image in RGB [0, 1] (3, h, w), the frame the resized boxes live in."""

    def forward(self, images, targets=None):
        image_list, targets = super().forward(images, targets)
        if targets is not None:
            t = image_list.tensors
            mean = torch.as_tensor(self.image_mean, dtype=t.dtype, device=t.device)[:, None, None]
            std = torch.as_tensor(self.image_std, dtype=t.dtype, device=t.device)[:, None, None]
            for i, (h, w) in enumerate(image_list.image_sizes):
                # normalising is per-channel affine, so it commutes with the bilinear resize
                targets[i]["guide"] = (t[i, :, :h, :w].detach() * std + mean).clamp(0, 1)
        return image_list, targets


def _mask_loss_defaults():
    from clipapro.adapters.boxes import box_apro_targets
    from clipapro.adapters.mask_loss import box_supervised_mask_loss

    return box_supervised_mask_loss, box_apro_targets


class BoxSupervisedRoIHeads(RoIHeads):
    """``RoIHeads`` whose mask loss (``loss_mask``) is the APro box loss; see the module docstring.

    Keyword options (beyond torchvision's): ``roi_size`` (side of the RoI grid the loss works on;
    None: the mask head's output, 28; larger upsamples the logits bilinearly for finer targets),
    ``context`` (the loss frame is the RoI grown about its centre by this factor, the mask outside
    the RoI being background, as Mask R-CNN's pasting makes it; see below) and the keywords of
    :func:`~clipapro.adapters.mask_loss.box_supervised_mask_loss` (loss weights and propagation
    options; :data:`ROI_APRO_DEFAULTS` first). ``last_mask_terms`` holds the detached unweighted
    terms of the last step.

    Why the context: a positive RoI overlaps its box by IoU >= 0.5 (the GT box itself is one), so
    inside the RoI alone there is almost no pixel outside the box. APro's targets carry
    "background" from outside the box into the background parts inside it (along the tree, and
    locally); with nothing outside, a mask that fills the whole RoI is its own target and only the
    projection term acts: on Penn-Fudan (README) ``context=1.0`` trained masks that score as the
    filled box does. Hard zeros around the RoI also pull the targets down; with ``context=2`` and
    the full-photo ``zeta_g`` the masks collapsed to background in training (mask AP 0).
    """

    def __init__(self, *args, roi_size: int | None = None, context: float = 1.5, **loss_options):
        super().__init__(*args)
        if isinstance(context, bool) or not isinstance(context, (int, float)) or not 1.0 <= context <= 4.0:
            raise ValueError(f"context must be a number in [1, 4], got {context!r}")
        self.context = float(context)
        loss_fn, targets_fn = _mask_loss_defaults()
        weights = {k: v for k, v in loss_options.items() if k.endswith("_weight")}
        check_option_names(weights, loss_fn, "mask_loss_options")
        check_option_names({k: v for k, v in loss_options.items() if k not in weights}, targets_fn,
                           "mask_loss_options", exclude=("tree",))
        self.roi_size = None if roi_size is None else check_int(roi_size, "roi_size", min_value=4)
        self.loss_options = {**ROI_APRO_DEFAULTS, **loss_options}
        self.last_mask_terms: dict[str, float] = {}

    @classmethod
    def from_roi_heads(cls, heads: RoIHeads, **options) -> BoxSupervisedRoIHeads:
        """The same heads (shared modules, same thresholds and sampler) with the box-supervised mask loss."""
        if heads.mask_roi_pool is None or heads.mask_head is None or heads.mask_predictor is None:
            raise ValueError("heads must have a mask branch (a Mask R-CNN's roi_heads)")
        if heads.keypoint_predictor is not None:
            raise ValueError("heads with a keypoint branch are not supported")
        return cls(heads.box_roi_pool, heads.box_head, heads.box_predictor,
                   heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
                   heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
                   heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
                   heads.mask_roi_pool, heads.mask_head, heads.mask_predictor, **options)

    def check_targets(self, targets):
        if targets is None:
            raise ValueError("targets should not be None")
        for i, t in enumerate(targets):
            for key in ("boxes", "labels", "guide"):
                if key not in t:
                    raise ValueError(f"targets[{i}] has no {key!r} (the guide comes from GuideTransform)")

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        pos = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [p[i] for p, i in zip(proposals, pos, strict=True)]
        pos_matched = [m[i] for m, i in zip(matched_idxs, pos, strict=True)]
        mask_features = self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
        mask_logits = self.mask_predictor(mask_features)
        loss_mask = self.box_mask_loss(mask_logits, mask_proposals, pos_matched, targets)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg, "loss_mask": loss_mask}

    def box_mask_loss(self, mask_logits, mask_proposals, pos_matched, targets) -> torch.Tensor:
        """The APro box loss of the positive RoIs' masks (their GT class channel).

        mask_logits (R, K+1, M, M); mask_proposals / pos_matched: per image (R_i, 4) RoIs and the
        index of the GT box each was matched to; targets: per image ``boxes``, ``labels``, ``guide``.
        """
        from clipapro.adapters.mask_loss import box_supervised_mask_loss, roi_box_masks, roi_crops

        size = self.roi_size or mask_logits.shape[-1]
        pad = int(round(size * (self.context - 1) / 2))
        frame = size + 2 * pad
        crops, boxes, classes = [], [], []
        for props, idx, t in zip(mask_proposals, pos_matched, targets, strict=True):
            grown = _grow(props, pad / size)  # the RoI's grid extended by `pad` cells on every side
            crops.append(roi_crops(t["guide"], grown, frame))
            boxes.append(roi_box_masks(grown, t["boxes"][idx], frame))
            classes.append(t["labels"][idx])
        cls = torch.cat(classes)
        logits = mask_logits[torch.arange(cls.shape[0], device=cls.device), cls]
        if size != logits.shape[-1] and logits.shape[0]:
            logits = F.interpolate(logits[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        if pad:  # outside its RoI a Mask R-CNN mask is background: a constant, no gradient
            logits = F.pad(logits, (pad, pad, pad, pad), value=_BACKGROUND_LOGIT)
        terms = box_supervised_mask_loss(logits, torch.cat(crops), torch.cat(boxes), **self.loss_options)
        self.last_mask_terms = {k: float(v.detach()) for k, v in terms.items() if k != "loss"}
        return terms["loss"]
