"""``clipapro refine``: refine a coarse probability map (.npy) with its image, like a DenseCRF call."""

from __future__ import annotations

NAME = "refine"
HELP = "refine coarse class probabilities (.npy, K x H x W) with the image (default: the best method)"
DESCRIPTION = (HELP + ". Example: python -m clipapro refine photo.jpg probs.npy --out refined.npy "
               "--labels-out labels.png --option w_tree=5")


def add_arguments(parser) -> None:
    parser.add_argument("image", help="the photo (any format Pillow reads; converted to RGB)")
    parser.add_argument("probs", help=".npy array (K, H, W) of probabilities summing to one over K "
                                      "(or logits with --logits), H x W as the image")
    parser.add_argument("--out", required=True, help="output .npy of refined probabilities (K, H, W), float32")
    parser.add_argument("--labels-out", default=None, help="also write the argmax labels as a palette PNG")
    parser.add_argument("--method", default="auto",
                        help="refiner: auto, crf-tree, apro, apro-gp, apro-lp, pamr, densecrf")
    parser.add_argument("--logits", action="store_true", help="PROBS holds logits: softmax over K first")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="method option, VALUE parsed as JSON when possible (repeatable), e.g. w_tree=5")
    from clipapro.commands._common import add_figure_argument

    add_figure_argument(parser)


def _parse_options(items) -> dict:
    import json

    from clipapro.cli import UsageError

    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--option must be KEY=VALUE with KEY a name, got {item!r}")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from clipapro._io import atomic_path, save_label_png
    from clipapro.cli import UsageError
    from clipapro.commands._common import read_image, write_label_figure
    from clipapro.refiners import REFINERS, refine

    if args.method != "auto" and args.method not in REFINERS:
        raise UsageError(f"--method must be auto or one of {', '.join(sorted(REFINERS))}, got {args.method!r}")
    options = _parse_options(args.option)
    image = read_image(args.image)
    if not Path(args.probs).is_file():
        raise FileNotFoundError(f"no such file: {args.probs}")
    probs = np.load(args.probs, allow_pickle=False)
    if probs.ndim != 3:
        raise ValueError(f"{args.probs} must hold a (K, H, W) array, got shape {probs.shape}")
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"{args.probs} has H x W = {probs.shape[1:]} but {args.image} is {image.shape[:2]}")
    if args.labels_out and probs.shape[0] > 256:
        raise UsageError(f"--labels-out needs at most 256 classes for a palette PNG, got {probs.shape[0]}")
    try:
        out = refine(image, probs.astype(np.float32, copy=False), method=args.method, logits=args.logits,
                     **options)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise UsageError(f"--option not understood by method {args.method}: {err}") from err
        raise
    with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
        np.save(f, out.astype(np.float32))
    if args.labels_out:
        save_label_png(args.labels_out, out.argmax(0))
    if args.figure and out.shape[0] <= 256:
        write_label_figure(args.figure, image, out.argmax(0))
    return 0
