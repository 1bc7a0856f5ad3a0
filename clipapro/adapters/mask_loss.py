"""The APro box loss for any mask head that predicts one mask per region (RoI, grid cell, query).

:class:`~clipapro.adapters.boxes.BoxAProLoss` works on the instances of one whole image. Detectors
predict masks in their own frame instead: Mask R-CNN a 28 x 28 mask inside each RoI, SOLO a mask per
grid cell at a fraction of the image size, Mask2Former a mask per query. :func:`box_supervised_mask_loss`
takes R such masks, each with the image resampled into the same frame (its *guide*) and the box of the
object it was matched to drawn in that frame, and returns the three terms of the APro box loss
(``3 * projection + 2 * global + 1 * local``, the authors' weights) computed per region. Every region
is its own little image: the global term's tree is built on each region's guide. No mask label is
read; gradients flow only through ``mask_logits``.

How a head calls it (shapes for R matched regions of side M)::

    roi_images = roi_crops(image, proposals, M)                  # Mask R-CNN: the image in each RoI
    roi_boxes = roi_box_masks(proposals, matched_gt_boxes, M)    # the GT box seen from the RoI
    terms = box_supervised_mask_loss(mask_logits, roi_images, roi_boxes)
    loss = terms["loss"]                                         # or weight terms["projection"] ... yourself

For a SOLO- or Mask2Former-style head predicting full-image masks at stride s, the "region" is the
whole (downsampled) image: ``roi_images`` = the image resized to the mask size and repeated for every
matched mask, ``roi_box_masks`` = :func:`~clipapro.adapters.boxes.box_masks` of the matched GT boxes
divided by s. One R-batch call then covers all of them (the trees of repeated guides are identical).
"""

from __future__ import annotations

import torch

from clipapro._validate import FLOAT_DTYPES, check_option_names, check_positive, check_tensor, signature_defaults
from clipapro.adapters.boxes import BOX_LOSS_WEIGHTS, box_apro_targets, box_projection_loss
from clipapro.propagation import AProTargets, kruskal_tree, local_filter, tree_filter

__all__ = ["box_supervised_mask_loss", "roi_apro_targets", "roi_box_masks", "roi_crops"]

#: The propagation options and their defaults: those of :func:`box_apro_targets`, held once there.
APRO_OPTIONS = signature_defaults(box_apro_targets, exclude=("tree",))


def _check_region_inputs(mask_probs, roi_images, roi_box_masks):
    check_tensor(mask_probs, "mask_logits", ndim=3, dtypes=FLOAT_DTYPES, finite=True, nonempty=False)
    check_tensor(roi_images, "roi_images", ndim=4, floating=True, finite=True, nonempty=False)
    if not isinstance(roi_box_masks, torch.Tensor) or roi_box_masks.dim() != 3:
        raise ValueError("roi_box_masks must be an (R, M, M) bool or 0/1 tensor, got "
                         f"{getattr(roi_box_masks, 'shape', type(roi_box_masks).__name__)}")
    r, h, w = mask_probs.shape
    if roi_images.shape[0] != r or roi_images.shape[-2:] != (h, w):
        raise ValueError(f"roi_images {tuple(roi_images.shape)} must be (R, F, M, M) with R, M of mask_logits "
                         f"{(r, h, w)}")
    if roi_box_masks.shape != (r, h, w):
        raise ValueError(f"roi_box_masks {tuple(roi_box_masks.shape)} must match mask_logits {(r, h, w)}")


@torch.no_grad()
def roi_apro_targets(mask_probs: torch.Tensor, roi_images: torch.Tensor, roi_box_masks: torch.Tensor,
                     **apro_options) -> AProTargets:
    """APro's global and local soft targets of R regions, each on its own guide, zero outside its box.

    The same recipe as :func:`~clipapro.adapters.boxes.box_apro_targets` (image-guided GP, then a
    GP guided by its own result, and LP; the prediction propagated unmasked), with one tree per region.

    Args:
        mask_probs: (R, M, M) foreground probabilities (detached internally).
        roi_images: (R, F, M, M) guides (RGB in [0, 1] for the defaults).
        roi_box_masks: (R, M, M) bool, the matched box in each region's frame.
        apro_options: as :func:`box_apro_targets` (zeta_g, zeta_label, label_gp, kernel_size, dilation,
            zeta_s, iterations).

    Returns:
        ``AProTargets(global_, local)``, each (R, M, M) on the device of ``mask_probs``, no graph.

    Example:
        >>> t = roi_apro_targets(torch.rand(2, 8, 8), torch.rand(2, 3, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool))
        >>> t.global_.shape
        torch.Size([2, 8, 8])
    """
    _check_region_inputs(mask_probs, roi_images, roi_box_masks)
    check_option_names(apro_options, box_apro_targets, "roi_apro_targets", exclude=("tree",))
    o = {**APRO_OPTIONS, **apro_options}
    check_positive(o["zeta_g"], "zeta_g")
    check_positive(o["zeta_label"], "zeta_label")
    r = mask_probs.shape[0]
    if r == 0:
        empty = mask_probs.detach().new_zeros(mask_probs.shape)
        return AProTargets(empty, empty.clone())
    # the propagation core runs on the CPU in float32 (float64 inputs stay float64)
    dtype = torch.float64 if mask_probs.dtype == torch.float64 else torch.float32
    x = mask_probs.detach().to("cpu", dtype).unsqueeze(1)
    guide = roi_images.detach().to("cpu", dtype).contiguous()
    kt = kruskal_tree(guide)
    g = tree_filter(x, kt, zeta=o["zeta_g"])
    if o["label_gp"]:
        g = tree_filter(g, g, zeta=o["zeta_label"], tree=kt.edges)
    lp = local_filter(x, guide, kernel_size=o["kernel_size"], dilation=o["dilation"], zeta=o["zeta_s"],
                      iterations=o["iterations"])
    inside = roi_box_masks.to("cpu", dtype)
    out = [(t[:, 0] * inside).to(mask_probs.device, mask_probs.dtype) for t in (g, lp)]
    return AProTargets(*out)


def box_supervised_mask_loss(mask_logits: torch.Tensor, roi_images: torch.Tensor, roi_box_masks: torch.Tensor, *,
                             projection_weight: float = BOX_LOSS_WEIGHTS["projection"],
                             global_weight: float = BOX_LOSS_WEIGHTS["global"],
                             local_weight: float = BOX_LOSS_WEIGHTS["local"],
                             **apro_options) -> dict[str, torch.Tensor]:
    """The APro box loss of R predicted masks, each in its own frame (RoI, grid cell, query mask).

    ``projection``: BoxInst's dice between the max-projections of the mask and of the box on both
    axes; ``global`` / ``local``: ``sum_box |target - p| / box area`` with APro's GP and LP targets
    (:func:`roi_apro_targets`, no gradient). Each is the mean over regions.

    Args:
        mask_logits: (R, M, M) or (R, 1, M, M) logits (before the sigmoid), any float dtype.
        roi_images: (R, F, M, M) the image resampled into each region's frame (RGB in [0, 1]).
        roi_box_masks: (R, M, M) bool / 0-1, the matched GT box in each region's frame.
        projection_weight, global_weight, local_weight: the weights (APro defaults 3, 2, 1).
        apro_options: propagation options of :func:`~clipapro.adapters.boxes.box_apro_targets`.

    Returns:
        dict with ``loss`` (the weighted sum, a scalar with a graph to ``mask_logits`` only; 0 with a
        graph when R = 0) and the unweighted terms ``projection``, ``global``, ``local`` (scalars,
        also with their graphs, so a caller can weight them itself).

    Example:
        >>> logits = torch.randn(3, 1, 16, 16, requires_grad=True)
        >>> boxes = torch.zeros(3, 16, 16, dtype=torch.bool); boxes[:, 4:12, 3:10] = True
        >>> terms = box_supervised_mask_loss(logits, torch.rand(3, 3, 16, 16), boxes)
        >>> terms["loss"].backward(); sorted(terms)
        ['global', 'local', 'loss', 'projection']
    """
    if isinstance(mask_logits, torch.Tensor) and mask_logits.dim() == 4:
        if mask_logits.shape[1] != 1:
            raise ValueError(f"mask_logits must be (R, M, M) or (R, 1, M, M), got {tuple(mask_logits.shape)}; "
                             "pick each region's class channel first")
        mask_logits = mask_logits[:, 0]
    check_tensor(mask_logits, "mask_logits", ndim=3, floating=True, finite=True, nonempty=False)
    weights = {"projection": check_positive(projection_weight, "projection_weight", allow_zero=True),
               "global": check_positive(global_weight, "global_weight", allow_zero=True),
               "local": check_positive(local_weight, "local_weight", allow_zero=True)}
    probs = (mask_logits if mask_logits.dtype == torch.float64 else mask_logits.float()).sigmoid()
    _check_region_inputs(probs, roi_images, roi_box_masks)
    if probs.shape[0] == 0:
        zero = mask_logits.sum() * 0
        return {"loss": zero, "projection": zero, "global": zero, "local": zero}
    inside = roi_box_masks.detach().to(device=probs.device, dtype=probs.dtype)  # a target: no gradient
    area = inside.flatten(1).sum(1).clamp_min(1)
    targets = roi_apro_targets(probs, roi_images, roi_box_masks, **apro_options)
    terms = {
        "projection": box_projection_loss(probs, inside).mean(),
        "global": (((targets.global_ - probs).abs() * inside).flatten(1).sum(1) / area).mean(),
        "local": (((targets.local - probs).abs() * inside).flatten(1).sum(1) / area).mean(),
    }
    terms["loss"] = sum(weights[k] * v for k, v in terms.items())
    return terms


def roi_crops(image: torch.Tensor, boxes: torch.Tensor, size: int, *, sampling_ratio: int = 2) -> torch.Tensor:
    """The image inside each box resampled to ``size`` x ``size`` (RoIAlign, pixel-edge coordinates).

    Args:
        image: (F, H, W) float image. boxes: (R, 4) ``x0, y0, x1, y1`` in its pixel coordinates.
        size: output side M. sampling_ratio: RoIAlign samples per bin and axis (2: a mild anti-alias).

    Returns:
        (R, F, M, M), no graph to ``boxes``: cell (i, j) is the mean of the image around the point
        ``(x0 + (j + 0.5) w / M, y0 + (i + 0.5) h / M)``, where pixel (x, y) covers ``[x, x+1) x [y, y+1)``.

    Example:
        >>> roi_crops(torch.rand(3, 20, 30), torch.tensor([[2., 3., 12., 18.]]), 7).shape
        torch.Size([1, 3, 7, 7])
    """
    from torchvision.ops import roi_align

    check_tensor(image, "image", ndim=3, floating=True, finite=True)
    img = image.detach() if image.dtype in FLOAT_DTYPES else image.detach().float()  # e.g. half under AMP
    b = boxes.detach().to(img.dtype)
    rois = torch.cat([b.new_zeros((b.shape[0], 1)), b], 1)
    return roi_align(img[None], rois, (size, size), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                     aligned=True)


def roi_box_masks(rois: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(R, M, M) bool: which cells of each RoI's M x M grid have their centre inside its matched box.

    ``rois`` and ``boxes`` are (R, 4) ``x0, y0, x1, y1`` in the same image coordinates (the cell
    centres are those of :func:`roi_crops`). A box that contains the RoI fills it.

    Example:
        >>> roi_box_masks(torch.tensor([[0., 0., 4., 4.]]), torch.tensor([[0., 0., 2., 4.]]), 4)[0, 0]
        tensor([ True,  True, False, False])
    """
    if rois.shape != boxes.shape or rois.dim() != 2 or rois.shape[-1] != 4:
        raise ValueError(f"rois {tuple(rois.shape)} and boxes {tuple(boxes.shape)} must both be (R, 4)")
    r = rois.detach().double()
    b = boxes.detach().to(r)
    t = (torch.arange(size, dtype=r.dtype, device=r.device) + 0.5) / size
    xs = r[:, 0:1] + t[None] * (r[:, 2:3] - r[:, 0:1])
    ys = r[:, 1:2] + t[None] * (r[:, 3:4] - r[:, 1:2])
    in_x = (xs >= b[:, 0:1]) & (xs <= b[:, 2:3])
    in_y = (ys >= b[:, 1:2]) & (ys <= b[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]
