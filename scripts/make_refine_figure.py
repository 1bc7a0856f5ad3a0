"""The README's headline refinement figure: a real annotated photo, its coarse prediction under one
noise model of the quality study, DenseCRF, the default refiner and the ground truth.

    python scripts/make_refine_figure.py                                   # docs/figures/refine_headline.png
    python scripts/make_refine_figure.py --set voc_extra --photo 2008_002536 --noise iid --out fig.png

The coarse map is :func:`refine_noise.coarse_probs` of the study with the study's seed for that
photo (``scripts/refine_quality.py``), so the figure is one cell of the study's table. Each panel's
title gives the photo's mIoU (mmseg convention, classes in the ground truth or the prediction).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parent
if (_CHECKOUT / "clipapro" / "__init__.py").is_file():
    sys.path.insert(0, str(_CHECKOUT))
sys.path.insert(0, str(_HERE))
from refine_noise import coarse_probs  # noqa: E402
from refine_quality import _seed  # noqa: E402
from refine_sets import load_set  # noqa: E402

from clipapro.metrics import confusion_counts, metrics_from_counts  # noqa: E402
from clipapro.refiners import DEFAULT_METHOD, refine  # noqa: E402
from clipapro.viz import save_panels  # noqa: E402

DATA = _CHECKOUT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=DATA)
    ap.add_argument("--set", default="voc_extra", help="a set of the study (scripts/refine_sets.py)")
    ap.add_argument("--photo", default="2008_002536", help="photo id in that set")
    ap.add_argument("--noise", default="iid", help="noise model of the study")
    ap.add_argument("--seed", type=int, default=0, help="the study's noise seed")
    ap.add_argument("--methods", default=f"densecrf,{DEFAULT_METHOD}", help="refiners, in panel order")
    ap.add_argument("--out", type=Path, default=_CHECKOUT / "docs" / "figures" / "refine_headline.png")
    args = ap.parse_args(argv)
    s = load_set(args.data_root, args.set)
    photos = {pid: (img, gt) for pid, img, gt in s.photos}
    if args.photo not in photos:
        ap.error(f"--photo {args.photo!r} is not in {args.set}: {sorted(photos)}")
    img, gt = photos[args.photo]
    probs = coarse_probs(gt, s.num_classes, args.noise, _seed(args.seed, s.name, args.photo, args.noise),
                         background=s.background)
    gt_t = torch.from_numpy(gt.astype(np.int64))

    def titled(name, labels):
        m = metrics_from_counts(confusion_counts(torch.from_numpy(labels), gt_t, s.num_classes)).miou
        return f"{name} (mIoU {100 * m:.1f})", labels

    panels = dict([titled(f"coarse ({args.noise})", probs.argmax(0).numpy())])
    for m in [m for m in args.methods.split(",") if m]:
        name = f"{m} (default)" if m == DEFAULT_METHOD else m
        panels.update([titled(name, refine(img, probs, method=m).argmax(0).numpy())])
    panels["ground truth"] = gt
    names = getattr(s, "classes", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_panels(args.out, img, panels, names, panel_width=300, columns=6)
    print(f"wrote {args.out}: " + ", ".join(panels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
