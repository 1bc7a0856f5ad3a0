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
    parser.add_argument("--rounds", type=int, default=2, help="APro refinement rounds")
    from clipapro.commands._common import add_figure_argument

    add_figure_argument(parser)


def run(args) -> int:
    import torch

    from clipapro._io import save_label_png
    from clipapro.adapters.labels import points_to_labels, read_points_json, read_scribble_png
    from clipapro.adapters.tools import scribble_to_mask
    from clipapro.cli import UsageError
    from clipapro.commands._common import read_image, write_label_figure

    if args.rounds < 0:
        raise UsageError("--rounds must be >= 0")
    photo = read_image(args.image)
    image = torch.from_numpy(photo).permute(2, 0, 1).to(torch.float64) / 255
    size = tuple(image.shape[1:])
    if str(args.scribbles).lower().endswith(".json"):
        labels = points_to_labels(read_points_json(args.scribbles, size=size), size, radius=args.point_radius)
    else:
        labels = read_scribble_png(args.scribbles, size=size)
    mask = scribble_to_mask(image, torch.from_numpy(labels), rounds=args.rounds)
    save_label_png(args.out, mask.numpy())
    classes = sorted(int(c) for c in torch.unique(mask))
    print(f"{args.out}: {size[0]}x{size[1]}, classes {classes}")
    write_label_figure(args.figure, photo, mask.numpy())
    return 0
