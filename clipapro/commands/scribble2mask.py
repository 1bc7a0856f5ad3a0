"""``clipapro scribble2mask``: scribbles -> class mask with no trained network (colour models + APro)."""

from __future__ import annotations

NAME = "scribble2mask"
HELP = "turn scribbles (class index PNG, 255 = unlabelled) into a dense class mask (no network)"


def add_arguments(parser) -> None:
    parser.add_argument("image", help="photo (any format Pillow reads)")
    parser.add_argument("scribbles", help="scribble PNG of the same size: class indices, 255 = unlabelled; "
                        "or a point JSON ({\"points\": [{\"x\", \"y\", \"class\"}]}) with --point-radius")
    parser.add_argument("--out", required=True, help="output class index PNG (VOC palette)")
    parser.add_argument("--point-radius", type=int, default=3, help="disk radius for points read from JSON")
    from clipapro._validate import signature_defaults
    from clipapro.adapters.tools import scribble_to_probs

    parser.add_argument("--rounds", type=int, default=signature_defaults(scribble_to_probs)["rounds"],
                        help="APro refinement rounds")
    from clipapro.commands._common import add_figure_argument

    add_figure_argument(parser)


def run(args) -> int:
    import torch

    from clipapro.adapters.labels import points_to_labels, read_points_json, read_scribble_png
    from clipapro.adapters.tools import scribble_to_mask
    from clipapro.commands._common import (
        UsageError,
        check_outputs_apart,
        input_file,
        read_input_image,
        write_label_figure,
    )
    from clipapro.io import image_to_tensor, save_label_png

    if args.rounds < 0:
        raise UsageError("--rounds must be >= 0")
    if args.point_radius < 0:
        raise UsageError(f"--point-radius must be >= 0, got {args.point_radius}")
    input_file(args.scribbles, "scribble file")
    check_outputs_apart([args.image, args.scribbles], [p for p in (args.out, args.figure) if p])
    photo = read_input_image(args.image)
    image = image_to_tensor(photo, dtype=torch.float64)[0]
    size = tuple(image.shape[1:])
    try:  # a bad annotation file is a bad argument: found before any work, named in one line
        if str(args.scribbles).lower().endswith(".json"):
            labels = points_to_labels(read_points_json(args.scribbles, size=size), size, radius=args.point_radius)
        else:
            labels = read_scribble_png(args.scribbles, size=size)
    except ValueError as err:
        raise UsageError(str(err)) from None
    mask = scribble_to_mask(image, torch.from_numpy(labels), rounds=args.rounds)
    save_label_png(args.out, mask.numpy())
    classes = sorted(int(c) for c in torch.unique(mask))
    print(f"{args.out}: {size[0]}x{size[1]}, classes {classes}")
    write_label_figure(args.figure, photo, mask.numpy())
    return 0
