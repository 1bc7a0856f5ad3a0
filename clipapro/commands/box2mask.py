"""``clipapro box2mask``: boxes -> instance masks with no trained network (colour models + APro)."""

from __future__ import annotations

NAME = "box2mask"
HELP = "turn bounding boxes into instance masks (colour models refined by APro; no network)"
DESCRIPTION = (HELP + ". One photo: writes an instance index PNG: 0 = background, i = the i-th box (1-based). "
               "Boxes are x0,y0,x1,y1 in pixel-edge coordinates (x1, y1 exclusive for integer boxes). "
               "A whole dataset: --coco annotations.json --images DIR --out masks.json turns every box into a "
               "COCO result with an RLE mask (resumable: OUT.partial.jsonl records finished images, a rerun with the "
               "same settings skips them; score the masks with clipapro evaluate-instances).")


def add_arguments(parser) -> None:
    parser.add_argument("image", nargs="?", help="photo (any format Pillow reads); not with --coco")
    parser.add_argument("--boxes", help='boxes "x0,y0,x1,y1;x0,y0,x1,y1;..." in pixels (required for one photo)')
    parser.add_argument("--out", required=True,
                        help="output instance index PNG (one photo) or COCO results JSON (--coco)")
    parser.add_argument("--probs-out", help="optional .npy file for the (M, H, W) soft masks (one photo)")
    from clipapro._validate import signature_defaults
    from clipapro.adapters.tools import box_to_instances, box_to_probs
    from clipapro.pseudo.coco_masks import OVERLAPS, SCORES, box_masks_to_coco

    g = parser.add_argument_group("whole dataset (COCO)")
    g.add_argument("--coco", metavar="JSON", help="COCO instance JSON whose boxes to turn into masks (iscrowd "
                                                  "boxes are skipped)")
    g.add_argument("--images", metavar="DIR", help="image folder of --coco (file_name is relative to it)")
    coco_defaults = signature_defaults(box_masks_to_coco)
    g.add_argument("--score", choices=SCORES, default=coco_defaults["score"],
                   help="result score: 1.0, or the mean foreground probability inside the mask")
    g.add_argument("--overlap", choices=OVERLAPS, default=coco_defaults["overlap"],
                   help="exclusive: a pixel goes to its most probable box (as the PNG); independent: masks may "
                        "overlap")
    g.add_argument("--limit", type=int, default=None, help="only the first N images (quick runs)")
    g.add_argument("--skip-bad-boxes", action="store_true",
                   help="leave out boxes with zero area or outside their image (each named on stderr) instead of "
                        "stopping at the first")

    parser.add_argument("--rounds", type=int, default=signature_defaults(box_to_probs)["rounds"],
                        help="colour-model / propagation rounds")
    parser.add_argument("--threshold", type=float, default=signature_defaults(box_to_instances)["threshold"],
                        help="foreground probability threshold")
    from clipapro.commands._common import add_figure_argument

    add_figure_argument(parser)


#: Options whose value may start with "-" (a negative coordinate): the CLI joins them as --boxes=VALUE.
NEGATIVE_VALUE_OPTIONS = ("--boxes",)


def parse_boxes(text: str):
    """Parse ``"x0,y0,x1,y1;..."`` into a list of 4-float lists (UsageError on bad syntax)."""
    from clipapro.commands._common import UsageError

    boxes = []
    for i, part in enumerate(p for p in text.replace(" ", "").split(";") if p):
        vals = part.split(",")
        if len(vals) != 4:
            raise UsageError(f"--boxes: box {i} {part!r} must have 4 numbers x0,y0,x1,y1")
        try:
            boxes.append([float(v) for v in vals])
        except ValueError:
            raise UsageError(f"--boxes: box {i} {part!r} has a non-numeric coordinate") from None
    if not boxes:
        raise UsageError("--boxes must contain at least one box")
    return boxes


def run(args) -> int:
    if args.coco is not None:
        return _run_coco(args)
    from clipapro.commands._common import UsageError

    if args.image is None or args.boxes is None:
        raise UsageError("give a photo and --boxes, or --coco JSON --images DIR for a whole dataset")
    return _run_one(args)


def _run_coco(args) -> int:
    import sys
    from pathlib import Path

    from clipapro.commands._common import UsageError, check_outputs_apart, input_file
    from clipapro.data.base import DatasetItemError
    from clipapro.data.instances import CocoInstances
    from clipapro.pseudo.coco_masks import ResumeMismatchError, box_masks_to_coco

    for flag, value in (("a photo", args.image), ("--boxes", args.boxes), ("--probs-out", args.probs_out),
                        ("--figure", args.figure)):
        if value is not None:
            raise UsageError(f"{flag} is for one photo, not with --coco (score and draw the masks with clipapro "
                             "evaluate-instances --figure)")
    if args.images is None:
        raise UsageError("--coco needs --images DIR (the folder its file_name entries are relative to)")
    if args.rounds < 1:
        raise UsageError("--rounds must be >= 1")
    if not 0 < args.threshold < 1:
        raise UsageError("--threshold must lie in (0, 1)")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    ann = input_file(args.coco, "annotation file")
    check_outputs_apart([ann], [args.out])
    try:
        ds = CocoInstances(ann, args.images, with_masks=False, skip_bad_boxes=args.skip_bad_boxes)
    except DatasetItemError as err:
        raise UsageError(str(err)) from None
    for message in ds.skipped:
        print(f"clipapro box2mask: skipped: {message}", file=sys.stderr)
    try:
        summary = box_masks_to_coco(ds, args.out, threshold=args.threshold, rounds=args.rounds, score=args.score,
                                    overlap=args.overlap, limit=args.limit,
                                    config={"annotations": str(Path(ann).resolve()), "sha256": _sha256(ann)})
    except DatasetItemError as err:
        raise UsageError(f"{err} (finished images are kept; rerun to resume)") from None
    except ResumeMismatchError as err:
        raise UsageError(str(err)) from None
    print(f"{summary['out']}: {summary['boxes']} mask(s) for {summary['images']} image(s) "
          f"({summary['skipped_done']} already done, {summary['empty_masks']} empty mask(s)), "
          f"{summary['seconds']:.1f} s")
    return 0


def _sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run_one(args) -> int:
    import numpy as np
    import torch

    from clipapro.adapters.boxes import check_boxes
    from clipapro.adapters.tools import box_to_probs
    from clipapro.commands._common import UsageError, check_outputs_apart, read_input_image, write_label_figure
    from clipapro.io import atomic_path, image_to_tensor, save_label_png

    boxes = parse_boxes(args.boxes)
    if args.rounds < 1:
        raise UsageError("--rounds must be >= 1")
    if not 0 < args.threshold < 1:
        raise UsageError("--threshold must lie in (0, 1)")
    check_outputs_apart([args.image], [p for p in (args.out, args.probs_out, args.figure) if p])
    photo = read_input_image(args.image)
    image = image_to_tensor(photo, dtype=torch.float64)[0]
    try:
        b = check_boxes(boxes, image.shape[1], image.shape[2])
    except ValueError as err:
        raise UsageError(f"--boxes: {err}") from None
    if len(boxes) > 254:
        raise UsageError("--boxes: at most 254 boxes fit an instance index PNG")
    probs = box_to_probs(image, b, rounds=args.rounds)
    best, idx = probs.max(0)
    inst = torch.where(best > args.threshold, idx + 1, torch.zeros_like(idx))
    save_label_png(args.out, inst.numpy())
    if args.probs_out:
        with atomic_path(args.probs_out) as tmp, open(tmp, "wb") as f:
            np.save(f, probs.float().numpy())
    print(f"{args.out}: {len(boxes)} instance(s), foreground pixels per instance: "
          f"{[int((inst == i + 1).sum()) for i in range(len(boxes))]}")
    names = ["background"] + [f"box {i + 1}" for i in range(len(boxes))]
    write_label_figure(args.figure, photo, inst.numpy(), names)
    return 0
