"""``clipapro box2mask``: boxes -> instance masks with no trained network (colour models + APro)."""

from __future__ import annotations

NAME = "box2mask"
HELP = "turn bounding boxes into instance masks (colour models refined by APro; no network)"
DESCRIPTION = (HELP + ". Writes an instance index PNG: 0 = background, i = the i-th box (1-based). "
               "Boxes are x0,y0,x1,y1 in pixel-edge coordinates (x1, y1 exclusive for integer boxes).")


def add_arguments(parser) -> None:
    parser.add_argument("image", help="photo (any format Pillow reads)")
    parser.add_argument("--boxes", required=True, help='boxes "x0,y0,x1,y1;x0,y0,x1,y1;..." in pixels')
    parser.add_argument("--out", required=True, help="output instance index PNG")
    parser.add_argument("--probs-out", help="optional .npy file for the (M, H, W) soft masks")
    from clipapro._validate import signature_defaults
    from clipapro.adapters.tools import box_to_instances, box_to_probs

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
