"""Box-supervised instance masks: APro soft pseudo masks and the box loss (BoxInst/APro style).

Shapes: M instances of ONE image of H x W pixels; boxes are (M, 4) ``x0, y0, x1, y1`` in pixel-edge
coordinates (a pixel (x, y) is inside when its centre ``(x + 0.5, y + 0.5)`` lies in the box), so the
integer box ``(0, 0, W, H)`` covers the whole image and ``(2, 3, 5, 7)`` covers columns 2..4, rows 3..6.

The loss follows the APro authors' box head (``BoxSOLOv2Head.loss`` in github.com/CircleRadon/APro):
``3 * projection + 2 * global + 1 * local`` where projection is BoxInst's dice loss between the
max-projections of the mask and of the box on both axes, and global/local are
``sum_box |target - prediction| / box area`` with APro's two targets. The image tree is built once per
image and shared by all of its instances; the targets carry no gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from clipapro._validate import FLOAT_DTYPES, check_option_names, check_positive, check_tensor
from clipapro.propagation import AProTargets, KruskalTree, kruskal_tree, local_filter, tree_filter

__all__ = ["BoxAProLoss", "box_apro_targets", "box_masks", "box_projection_loss",
           "check_boxes"]

#: Loss weights of the authors' BoxSOLOv2 config (projection 3.0) and head (global 2.0, local 1.0).
BOX_LOSS_WEIGHTS = {"projection": 3.0, "global": 2.0, "local": 1.0}


def check_boxes(boxes, height: int, width: int, name: str = "boxes") -> torch.Tensor:
    """Validate (M, 4) boxes ``x0, y0, x1, y1`` against an H x W image; returns float64 (M, 4) on CPU.

    Raises ValueError for NaN/Inf, ``x1 <= x0`` or ``y1 <= y0``, coordinates outside ``[0, W] x [0, H]``
    and boxes that cover no pixel centre.

    Example:
        >>> check_boxes([[0, 0, 4, 4]], 8, 8).shape
        torch.Size([1, 4])
    """
    if not isinstance(boxes, torch.Tensor):
        try:
            boxes = torch.as_tensor(boxes, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be an (M, 4) tensor or nested list of numbers: {err}") from None
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (M, 4) as x0, y0, x1, y1, got {tuple(boxes.shape)}")
    b = boxes.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{name} contains NaN or Inf coordinates")
    for i, (x0, y0, x1, y1) in enumerate(b.tolist()):
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"{name}[{i}] = {(x0, y0, x1, y1)} must have x1 > x0 and y1 > y0")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(f"{name}[{i}] = {(x0, y0, x1, y1)} lies outside the {height} x {width} image "
                             f"(allowed 0 <= x <= {width}, 0 <= y <= {height})")
    if b.shape[0] and not bool(box_masks(b, height, width).flatten(1).any(1).all()):
        bad = int((~box_masks(b, height, width).flatten(1).any(1)).nonzero()[0])
        raise ValueError(f"{name}[{bad}] = {tuple(b[bad].tolist())} covers no pixel centre")
    return b


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(M, H, W) bool masks of the pixels whose centres lie inside each (M, 4) box (no validation)."""
    b = boxes.to(torch.float64)
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    in_x = (xs[None] >= b[:, 0:1]) & (xs[None] <= b[:, 2:3])
    in_y = (ys[None] >= b[:, 1:2]) & (ys[None] <= b[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def _check_instance_inputs(mask_probs, image, boxes):
    check_tensor(mask_probs, "mask_probs", ndim=3, dtypes=FLOAT_DTYPES, finite=True, nonempty=False)
    if image.dim() == 3:
        image = image.unsqueeze(0)
    check_tensor(image, "image", ndim=4, dtypes=FLOAT_DTYPES, finite=True)
    if image.shape[0] != 1:
        raise ValueError(f"image must be ONE image (F, H, W) or (1, F, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if mask_probs.shape[-2:] != (h, w):
        raise ValueError(f"mask_probs {tuple(mask_probs.shape)} and image {tuple(image.shape)} must share "
                         "H x W")
    b = check_boxes(boxes, h, w)
    if b.shape[0] != mask_probs.shape[0]:
        raise ValueError(f"boxes has {b.shape[0]} rows but mask_probs has {mask_probs.shape[0]} instances")
    return image, b


@torch.no_grad()
def box_apro_targets(mask_probs: torch.Tensor, image: torch.Tensor, boxes, *, tree: KruskalTree | None = None,
                     zeta_g: float = 0.005, zeta_label: float = 0.07, label_gp: bool = True,
                     kernel_size: int = 5, dilation: int = 1, zeta_s: float = 0.1, iterations: int = 20):
    """APro's two soft pseudo masks for the M instances of one image, zero outside their boxes.

    Global target: GP of each instance's mask guided by the image (ONE tree for all instances; every
    instance is a channel of the same sweep), then a second GP on the same tree guided by each
    instance's own first result (``zeta_label``). Local target: LP guided by the image. Both targets
    are zero outside the instance's box. As in the authors' code the prediction itself is propagated
    unmasked: zeroing it outside the box first biases every target downwards near the box edges,
    which in training drags masks to all-background (measured in scripts/train_box_scribble_demo.py).

    Args:
        mask_probs: (M, H, W) foreground probabilities of the instances (detached internally).
        image: (F, H, W) or (1, F, H, W) guide, same dtype (RGB in [0, 1] for the defaults).
        boxes: (M, 4) ``x0, y0, x1, y1`` pixel-edge coordinates (see module docstring).
        tree: optional prebuilt :func:`~clipapro.kruskal_tree` of ``image`` (1 image).
        zeta_g, zeta_label, label_gp, kernel_size, dilation, zeta_s, iterations: the propagation
            options (as :func:`clipapro.apro`), defaults for an RGB guide in [0, 1]. The authors'
            values (zeta_g 0.01, zeta 0.07 for the label-guided GP, k=5, zeta_s 0.15, 20 iterations)
            act on mean/std-normalised images (std about 58/255), i.e. distances about 4.4x larger
            than in [0, 1] RGB; zeta_g/zeta_s here were picked on the real photos with
            ``scripts/adapters_quality.py`` (box2mask mIoU on the 5 VOC photos: zeta_g 0.03 -> 63.8,
            0.01 -> 81.6, 0.005 -> 81.9; zeta_s 0.025/0.05/0.1 -> 78.7/79.3/80.2 at 16 bins). Noisy
            or synthetic images need a wider zeta_g (the training demo uses 0.05): with zeta_g far
            below the image's noise distance the GP is the identity and the global term vanishes.

    Returns:
        :class:`~clipapro.propagation.AProTargets` ``(global_, local)``, each (M, H, W), no graph.

    Example:
        >>> img = torch.rand(3, 32, 32)
        >>> probs = torch.rand(2, 32, 32)
        >>> t = box_apro_targets(probs, img, [[2, 2, 20, 20], [10, 5, 30, 31]])
        >>> t.global_.shape, float(t.local[0, 25, 25])
        (torch.Size([2, 32, 32]), 0.0)
    """
    image, b = _check_instance_inputs(mask_probs, image, boxes)
    check_positive(zeta_g, "zeta_g")
    check_positive(zeta_label, "zeta_label")
    m, (h, w) = mask_probs.shape[0], image.shape[-2:]
    if m == 0:
        empty = mask_probs.detach().new_zeros((0, h, w))
        return AProTargets(empty, empty.clone())
    inside = box_masks(b, h, w).to(device=mask_probs.device, dtype=mask_probs.dtype)
    x = mask_probs.detach()
    kt = tree if tree is not None else kruskal_tree(image)
    if not isinstance(kt, KruskalTree) or kt.size != (h, w) or kt.parent.shape[0] != 1:
        raise ValueError("tree must be the KruskalTree of this one image (from kruskal_tree(image))")
    g = tree_filter(x.unsqueeze(0), kt, zeta=zeta_g)[0]
    if label_gp:
        # each instance re-weights the shared image tree by its own soft mask: a batch of M guides,
        # all on the same N-1 tree edges (only those are re-sorted, the grid MST is not rebuilt)
        g1 = g.unsqueeze(1)
        g = tree_filter(g1, g1, zeta=zeta_label, tree=kt.edges.expand(m, -1, -1))[:, 0]
    lp = local_filter(x.unsqueeze(0), image, kernel_size=kernel_size, dilation=dilation, zeta=zeta_s,
                      iterations=iterations)[0]
    return AProTargets(g * inside, lp * inside)


def box_projection_loss(mask_probs: torch.Tensor, boxes_mask: torch.Tensor, eps: float = 1e-5):
    """BoxInst projection term per instance: dice(max_y mask, max_y box) + dice(max_x mask, max_x box).

    ``dice(p, q) = 1 - (2 sum(pq) + eps) / (sum p^2 + sum q^2 + eps)`` (exactly 0 when p = q).
    Inputs (M, H, W) probabilities and box masks; returns (M,).
    """
    q = boxes_mask.to(mask_probs.dtype)

    def dice(p, t):
        return 1 - (2 * (p * t).sum(-1) + eps) / ((p * p).sum(-1) + (t * t).sum(-1) + eps)

    return dice(mask_probs.amax(-2), q.amax(-2)) + dice(mask_probs.amax(-1), q.amax(-1))


class BoxAProLoss(nn.Module):
    """Box-supervised mask loss: ``w_p * projection + w_g * global + w_l * local`` (APro defaults 3/2/1).

    ``forward(mask_probs, image, boxes, tree=None)`` with mask_probs (M, H, W) probabilities of the
    instances of ONE image (apply your sigmoid first), image (F, H, W) or (1, F, H, W), boxes (M, 4).
    Returns the mean over instances of the weighted sum (a scalar; 0 with a graph when M = 0).
    Gradients flow only through ``mask_probs``. ``last_terms`` holds the detached terms of the last call.

    Example:
        >>> loss_fn = BoxAProLoss()
        >>> logits = torch.randn(2, 32, 32, requires_grad=True)
        >>> loss = loss_fn(logits.sigmoid(), torch.rand(3, 32, 32), [[2, 2, 20, 20], [10, 5, 30, 31]])
        >>> loss.backward(); logits.grad.shape
        torch.Size([2, 32, 32])
    """

    def __init__(self, *, projection_weight: float = BOX_LOSS_WEIGHTS["projection"],
                 global_weight: float = BOX_LOSS_WEIGHTS["global"],
                 local_weight: float = BOX_LOSS_WEIGHTS["local"],
                 **apro_options):
        super().__init__()
        self.weights = {
            "projection": check_positive(projection_weight, "projection_weight", allow_zero=True),
            "global": check_positive(global_weight, "global_weight", allow_zero=True),
            "local": check_positive(local_weight, "local_weight", allow_zero=True),
        }
        check_option_names(apro_options, box_apro_targets, "BoxAProLoss", exclude=("tree",))
        self.apro_options = apro_options
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, mask_probs: torch.Tensor, image: torch.Tensor, boxes, tree: KruskalTree | None = None):
        image4, b = _check_instance_inputs(mask_probs, image, boxes)
        if mask_probs.shape[0] == 0:
            return mask_probs.sum() * 0
        h, w = image4.shape[-2:]
        inside = box_masks(b, h, w).to(device=mask_probs.device, dtype=mask_probs.dtype)
        area = inside.flatten(1).sum(1).clamp_min(1)
        targets = box_apro_targets(mask_probs, image4, b, tree=tree, **self.apro_options)
        proj = box_projection_loss(mask_probs, inside)
        glob = ((targets.global_ - mask_probs).abs() * inside).flatten(1).sum(1) / area
        loc = ((targets.local - mask_probs).abs() * inside).flatten(1).sum(1) / area
        self.last_terms = {"projection": proj.detach().mean(), "global": glob.detach().mean(),
                           "local": loc.detach().mean()}
        wt = self.weights
        return (wt["projection"] * proj + wt["global"] * glob + wt["local"] * loc).mean()
