"""CPU training demos of the box and scribble adapters on a synthetic shapes dataset.

Images (48 x 48): a smooth random background colour with noise and 1-2 shapes (reddish ellipses =
class 1, bluish triangles = class 2). A small dilated conv net (about 40k parameters) is trained from
scratch for ``--steps`` steps (Adam, batch 8) and scored by mask mIoU on 64 held-out images:

- **boxes only**: ``BoxAProLoss`` (projection + APro global/local terms, one tree per image) vs the
  box-as-mask baseline (BCE to the filled boxes); foreground/background mIoU.
- **scribbles only**: partial CE + ``AProSoftLabelLoss`` vs partial CE alone; 3-class mIoU. Scribbles:
  one short stroke through the middle of each shape and two short background strokes.

Run: ``.venv/bin/python scripts/train_box_scribble_demo.py --steps 300 --seeds 0 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

_CHECKOUT = Path(__file__).resolve().parents[1]
if (_CHECKOUT / "clipapro" / "__init__.py").is_file():  # a source checkout (not the copy in a wheel)
    sys.path.insert(0, str(_CHECKOUT))

from clipapro.adapters import AProSoftLabelLoss, BoxAProLoss, PartialCrossEntropy, box_masks  # noqa: E402

SIZE = 48


def make_sample(g: torch.Generator):
    """One image (3, S, S) in [0, 1], class map (S, S), boxes [(x0, y0, x1, y1)], scribbles (S, S)."""
    s = SIZE
    yy, xx = torch.meshgrid(torch.arange(s).float() + 0.5, torch.arange(s).float() + 0.5, indexing="ij")
    c0, c1 = torch.rand(3, generator=g), torch.rand(3, generator=g)
    ramp = (xx / s)[None]
    img = c0[:, None, None] * (1 - ramp) + c1[:, None, None] * ramp
    labels = torch.zeros(s, s, dtype=torch.long)
    scrib = torch.full((s, s), 255, dtype=torch.long)
    boxes = []
    n = 1 + int(torch.randint(2, (1,), generator=g))
    def jitter(scale):
        return float(torch.rand(1, generator=g)) * scale

    centres = [(12 + 24 * i + jitter(4), 14 + jitter(20)) for i in range(n)] if n == 2 else [(24.0, 24.0)]
    for cx, cy in centres:
        cls = 1 + int(torch.randint(2, (1,), generator=g))
        r = 7 + float(torch.rand(1, generator=g)) * (5 if n == 2 else 10)
        if cls == 1:
            shape = ((xx - cx) / r) ** 2 + ((yy - cy) / (0.7 * r)) ** 2 <= 1
        else:
            shape = (yy >= cy - r) & (yy <= cy + r) & ((xx - cx).abs() <= (yy - cy + r) * 0.5)
        def colour(cls=cls):  # class 1 objects are reddish, class 2 bluish: class is learnable from colour
            c = torch.rand(3, generator=g) * 0.5
            c[0 if cls == 1 else 2] = 0.7 + 0.3 * float(torch.rand(1, generator=g))
            return c

        col = colour()
        while float((col - img[:, int(cy), int(cx)]).abs().sum()) < 0.6:
            col = colour()
        img[:, shape] = col[:, None]
        labels[shape] = cls
        ys, xs = shape.nonzero(as_tuple=True)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
        row = int(ys.float().mean())
        cols = xs[ys == row]
        mid, half = int(cols.float().mean()), max(1, (int(cols.max()) - int(cols.min())) // 4)
        scrib[row, mid - half:mid + half + 1] = cls
    img = (img + 0.03 * torch.randn(3, s, s, generator=g)).clamp(0, 1)
    for _ in range(2):  # background strokes on pixels that are background
        y, x = int(torch.randint(s, (1,), generator=g)), int(torch.randint(s - 8, (1,), generator=g))
        seg = labels[y, x:x + 8] == 0
        scrib[y, x:x + 8][seg] = 0
    return img, labels, boxes, scrib


def make_set(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [make_sample(g) for _ in range(n)]


class TinyNet(nn.Module):
    def __init__(self, out_channels: int, width: int = 32):
        super().__init__()
        layers, c = [], 3
        for d in (1, 2, 4, 8, 1):
            # reflect padding: with zero padding the net can find the image border and satisfy the box
            # projection term with a frame of foreground along it (seen in failed runs)
            layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d, padding_mode="reflect"), nn.GroupNorm(4, width),
                       nn.ReLU()]
            c = width
        self.body = nn.Sequential(*layers, nn.Conv2d(width, out_channels, 1))

    def forward(self, x):
        return self.body(x)


def miou(pred, gt, k):
    ious = []
    for c in range(k):
        inter = ((pred == c) & (gt == c)).sum().item()
        union = ((pred == c) | (gt == c)).sum().item()
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious)


def box_loss_fn(kind, apro_options):
    apro_loss = BoxAProLoss(**apro_options)

    def loss(logits, batch, ramp=1.0):
        total = 0.0
        for i, (img, _, boxes, _) in enumerate(batch):
            prob = torch.sigmoid(logits[i, 0])
            if kind == "apro":
                # one class-agnostic map -> one mask per instance: zero inside the OTHER boxes, so
                # each instance's projection term sees only its own object
                inside = box_masks(torch.tensor(boxes, dtype=torch.float64), SIZE, SIZE).to(prob.dtype)
                others = (inside.sum(0, keepdim=True) - inside).clamp(0, 1)
                total = total + apro_loss(prob * (1 - others), img, boxes)
            else:
                target = torch.zeros_like(prob)
                for x0, y0, x1, y1 in boxes:
                    target[y0:y1, x0:x1] = 1
                total = total + F.binary_cross_entropy_with_logits(logits[i, 0], target)
        return total / len(batch)
    return loss


def scribble_loss_fn(kind, weight, apro_options):
    pce, soft = PartialCrossEntropy(), AProSoftLabelLoss(**apro_options)

    def loss(logits, batch, ramp=1.0):
        imgs = torch.stack([b[0] for b in batch])
        scr = torch.stack([b[3] for b in batch])
        out = pce(logits, scr)
        if kind == "apro":
            out = out + ramp * weight * soft(logits, imgs, scr)
        return out
    return loss


def train(task, kind, train_set, test_set, steps, seed, args):
    torch.manual_seed(seed)
    k = 1 if task == "boxes" else 3
    net = TinyNet(k)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    apro_options = {"zeta_g": args.zeta_g, "zeta_s": args.zeta_s}
    if task == "boxes":
        loss_fn = box_loss_fn(kind, apro_options)
    else:
        loss_fn = scribble_loss_fn(kind, args.soft_weight, apro_options)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(train_set), (8,), generator=g).tolist()
        batch = [train_set[i] for i in idx]
        logits = net(torch.stack([b[0] for b in batch]))
        # the soft-label term has trivial fixed points (constant maps): ramp it in after the sparse labels
        loss = loss_fn(logits, batch, ramp=min(1.0, step / max(1.0, args.soft_ramp * steps)))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)  # as the APro authors' config (max_norm=1)
        opt.step()
        for group in opt.param_groups:  # cosine decay
            group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
    with torch.no_grad():
        logits = net(torch.stack([b[0] for b in test_set]))
    gt = torch.stack([b[1] for b in test_set])
    if task == "boxes":
        score = miou((logits[:, 0] > 0).long(), (gt > 0).long(), 2)
    else:
        score = miou(logits.argmax(1), gt, 3)
    return score, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    ap.add_argument("--soft-weight", type=float, default=1.0, help="weight of AProSoftLabelLoss")
    ap.add_argument("--soft-ramp", type=float, default=0.3, help="fraction of steps to ramp the soft weight in")
    ap.add_argument("--zeta-g", type=float, default=0.05, help="GP bandwidth of both APro losses: the noise (0.03)\n"
                    "of these images needs a wider one than the photo defaults")
    ap.add_argument("--zeta-s", type=float, default=0.05, help="LP bandwidth of both APro losses")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--only", nargs="+", type=int, choices=range(4), default=list(range(4)),
                    help="run only these runs: 0 box-as-mask, 1 BoxAProLoss, 2 partial CE, 3 + APro")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_set, test_set = make_set(256, 1000), make_set(64, 2000)
    runs = [("boxes", "box-as-mask BCE"), ("boxes", "apro"), ("scribbles", "partial CE only"),
            ("scribbles", "apro")]
    results = []
    for task, kind in (runs[i] for i in args.only):
        scores, secs = [], []
        for seed in args.seeds:
            s, t = train(task, kind, train_set, test_set, args.steps, seed, args)
            scores.append(s)
            secs.append(t)
        apro_name = "BoxAProLoss" if task == "boxes" else "partial CE + AProSoftLabelLoss"
        name = apro_name if kind == "apro" else kind
        results.append({"task": task, "method": name, "miou": sum(scores) / len(scores),
                        "per_seed": scores, "train_s": sum(secs) / len(secs)})
        print(f"{task:10s} {name:34s} mIoU {100 * results[-1]['miou']:6.2f}  "
              f"({', '.join(f'{100 * x:.1f}' for x in scores)})  {results[-1]['train_s']:.0f} s/run",
              flush=True)
    print(json.dumps({"steps": args.steps, "seeds": args.seeds, "results": results}))


if __name__ == "__main__":
    main()
