"""Inference: instance masks from a trained model, and the filled-box baseline of the same detections.

``predict_instances(model, image)`` -> masks, boxes, labels, scores of one image (torchvision's
inference: per-class NMS, masks pasted into the image and thresholded). ``filled_box_masks`` turns
the same detections' boxes into masks: the baseline every box-supervised paper reports.
``evaluate_instance_model`` scores both on a dataset with COCO mask AP.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from clipapro._validate import check_positive, check_tensor

__all__ = ["InstancePrediction", "evaluate_instance_model", "filled_box_masks", "predict_instances"]


class InstancePrediction(NamedTuple):
    """Detections of one H x W image: masks bool (N, H, W), boxes float32 (N, 4) ``x0, y0, x1, y1``,
    labels int64 (N,) model labels (1..K), scores float32 (N,), best first."""

    masks: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor


def filled_box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, H, W) bool: the pixels whose centres lie inside each (N, 4) box (boxes clipped to the image)."""
    from clipapro.adapters.boxes import box_masks

    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4), got {tuple(boxes.shape)}")
    return box_masks(boxes.detach().cpu(), int(height), int(width))


@torch.no_grad()
def predict_instances(model, image: torch.Tensor, *, mask_threshold: float = 0.5,
                      score_threshold: float = 0.0) -> InstancePrediction:
    """Run a Mask R-CNN on one image.

    Args:
        model: a torchvision Mask R-CNN (e.g. from :func:`create_instance_model`); put in eval mode here
            (and back in its previous mode after).
        image: (3, H, W) float RGB in [0, 1].
        mask_threshold: probability above which a pixel belongs to the mask (torchvision's 0.5).
        score_threshold: drop detections scoring below it (the model's own ``box_score_thresh`` applies first).

    Returns:
        :class:`InstancePrediction` on the CPU.

    Example:
        >>> from clipapro.instances import create_instance_model
        >>> model = create_instance_model("maskrcnn_tiny", 1, min_size=64, max_size=64)
        >>> predict_instances(model, torch.rand(3, 48, 64)).masks.shape[1:]
        torch.Size([48, 64])
    """
    check_tensor(image, "image", ndim=3, floating=True, finite=True)
    if image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) RGB, got {tuple(image.shape)}")
    check_positive(mask_threshold, "mask_threshold")
    check_positive(score_threshold, "score_threshold", allow_zero=True)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model([image.to(device)])[0]
    finally:
        model.train(was_training)
    keep = out["scores"] >= score_threshold
    masks = out["masks"][keep][:, 0] > mask_threshold
    return InstancePrediction(masks.cpu(), out["boxes"][keep].float().cpu(), out["labels"][keep].cpu(),
                              out["scores"][keep].float().cpu())


@torch.no_grad()
def evaluate_instance_model(model, dataset, category_ids, *, limit: int | None = None, indices=None,
                            progress: bool = False) -> dict:
    """COCO mask AP of the model's masks and of its filled boxes on ``dataset`` (or ``indices`` of it).

    Args:
        model: Mask R-CNN predicting labels 1..K. dataset: an instance dataset (``ds[i]`` samples,
            ``ds.coco`` ground truth). category_ids: the dataset category id of model label k at k - 1.
        limit: score only the first ``limit`` images. indices: the images to score (default: all).

    Returns:
        ``{"mask": mask_ap(...), "box_filled": mask_ap(...), "results": COCO results of the masks,
        "results_box_filled": ...}``; the ground truth is restricted to the scored images.
    """
    from tqdm import tqdm

    from clipapro.metrics.instances import mask_ap, masks_to_results

    idx = list(range(len(dataset))) if indices is None else list(indices)
    if limit is not None:
        idx = idx[:limit]
    lut = torch.tensor([0] + [int(c) for c in category_ids], dtype=torch.int64)
    results, baseline, image_ids = [], [], []
    for i in tqdm(idx, desc="eval", disable=not progress, leave=False):
        sample = dataset[i]
        pred = predict_instances(model, sample.image)
        labels = lut[pred.labels]
        h, w = sample.image.shape[-2:]
        results += masks_to_results(sample.image_id, pred.masks, labels, pred.scores)
        baseline += masks_to_results(sample.image_id, filled_box_masks(pred.boxes, h, w), labels, pred.scores)
        image_ids.append(sample.image_id)
    gt = dataset.coco if len(idx) == len(dataset) else _subset_coco(dataset.coco, image_ids)
    return {"mask": mask_ap(gt, results), "box_filled": mask_ap(gt, baseline),
            "results": results, "results_box_filled": baseline}


def _subset_coco(coco, image_ids):
    """The ground truth of ``image_ids`` only (COCOeval counts every ground-truth image)."""
    from clipapro.data.instances import coco_from_dict

    keep = set(image_ids)
    d = coco.dataset
    return coco_from_dict({**d, "images": [im for im in d["images"] if im["id"] in keep],
                           "annotations": [a for a in d["annotations"] if a["image_id"] in keep]})
