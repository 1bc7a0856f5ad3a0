"""Proxy study of the Mask R-CNN RoI loss settings: free logits fitted per RoI, no network.

    python scripts/roi_loss_study.py '{"context": 1.5, "zeta_g": 0.02}'

RoIs: the Penn-Fudan boxes of every third photo (ids 1, 4, 7, ...) at a 256-pixel short side, each
jittered by up to 15 % of its size (as proposals are; seed 0). 120 Adam steps (lr 0.1) on (R, 28, 28)
logits under ``box_supervised_mask_loss`` in the grown frame of ``BoxSupervisedRoIHeads``
(``context``; ``bg`` is the logit outside the RoI). Prints the mIoU of the thresholded masks against
the real instance masks cropped to the RoIs, and that of the filled boxes. Other keys are options of
``box_supervised_mask_loss``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pennfudan"


def main(argv=None) -> int:
    from clipapro.adapters.mask_loss import box_supervised_mask_loss, roi_box_masks, roi_crops
    from clipapro.data.instances import CocoInstances
    from clipapro.instances.roi_heads import _grow

    opts = json.loads((argv or sys.argv[1:] or ["{}"])[0])
    context, bg = opts.pop("context", 1.0), opts.pop("bg", -20.0)
    ds = CocoInstances(DATA / "instances.json", DATA, with_masks=True)
    m = 28
    pad = int(round(m * (context - 1) / 2))
    frame = m + 2 * pad
    gen = torch.Generator().manual_seed(0)
    ims, box_frames, gts, box_rois = [], [], [], []
    for i in range(0, len(ds), 3):
        s = ds[i]
        scale = 256 / min(s.image.shape[-2:])
        img = F.interpolate(s.image[None], scale_factor=scale, mode="bilinear", align_corners=False)[0]
        b = s.boxes * scale
        wh = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).repeat(1, 2)
        rois = b + (torch.rand(b.shape, generator=gen) - 0.5) * 0.3 * wh
        grown = _grow(rois, pad / m)
        ims.append(roi_crops(img, grown, frame))
        box_frames.append(roi_box_masks(grown, b, frame))
        masks = F.interpolate(s.masks[:, None].float(), scale_factor=scale, mode="bilinear")[:, 0]
        gts.append(torch.cat([roi_crops(mk[None], r[None], m) for mk, r in zip(masks, rois, strict=True)])[:, 0] > 0.5)
        box_rois.append(roi_box_masks(rois, b, m))
    ims, box_frames, gts, box_rois = (torch.cat(x) for x in (ims, box_frames, gts, box_rois))

    def miou(a, b):
        return 100 * ((a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1).clamp_min(1)).mean().item()

    logits = torch.zeros(ims.shape[0], m, m, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    t0 = time.perf_counter()
    for _ in range(120):
        z = F.pad(logits, (pad,) * 4, value=bg) if pad else logits
        loss = box_supervised_mask_loss(z, ims, box_frames, **opts)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    pred = logits.detach().sigmoid() > 0.5
    print(json.dumps({"context": context, "bg": bg, **opts}), f"rois {ims.shape[0]}",
          f"filled-box mIoU {miou(box_rois, gts):.1f}", f"mask mIoU {miou(pred, gts):.1f}",
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
