"""``clipapro refine``: refine a coarse probability map (.npy) with its image, like a DenseCRF call."""

from __future__ import annotations

from clipapro.commands._common import UsageError, add_alias, add_figure_argument

NAME = "refine"
HELP = "refine coarse class probabilities (.npy, K x H x W) with the image (default: the best method)"
DESCRIPTION = (HELP + ". Example: python -m clipapro refine photo.jpg probs.npy --out refined.npy "
               "--labels-out labels.png --refine-opt w_tree=5")


def add_arguments(parser) -> None:
    from clipapro.refiners import list_refiners

    parser.add_argument("image", help="the photo (any format Pillow reads; converted to RGB)")
    parser.add_argument("probs", help=".npy (or one-array .npz) of shape (K, H, W): probabilities summing to one "
                                      "over K (or logits with --logits), H x W as the image")
    parser.add_argument("--out", required=True, help="output .npy of refined probabilities (K, H, W), float32")
    parser.add_argument("--labels-out", default=None, help="also write the argmax labels as a palette PNG")
    parser.add_argument("--refine", default="auto", help=f"refiner: auto or one of {', '.join(list_refiners())}")
    parser.add_argument("--logits", action="store_true", help="PROBS holds logits: softmax over K first")
    parser.add_argument("--refine-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="refiner option (repeatable), VALUE a Python literal, JSON or text, e.g. w_tree=5")
    add_alias(parser, "--method", "--refine")
    add_alias(parser, "--option", "--refine-opt", append=True)
    add_figure_argument(parser)


def run(args) -> int:
    import numpy as np

    from clipapro.commands._common import (
        check_outputs_apart,
        input_file,
        parse_options,
        read_input_image,
        write_label_figure,
    )
    from clipapro.io import (
        MAX_PNG_CLASSES,
        UnreadableFileError,
        load_probs,
        probs_to_tensor,
        save_label_png,
        save_probs,
    )
    from clipapro.refiners import get_refiner, refine

    options = parse_options(args.refine_opt, "--refine-opt")
    try:
        spec = get_refiner(args.refine)
        spec.check_options(options)
        spec.check_available()
    except (ValueError, TypeError, ImportError) as err:
        raise UsageError(str(err)) from None
    input_file(args.image, "image")
    input_file(args.probs, "probability file")
    outputs = [p for p in (args.out, args.labels_out, args.figure) if p]
    check_outputs_apart([args.image, args.probs], outputs)
    image = read_input_image(args.image)
    try:
        probs = load_probs(args.probs)
    except UnreadableFileError as err:
        raise UsageError(str(err)) from None
    if probs.shape[1:] != image.shape[:2]:
        raise UsageError(f"{args.probs} has H x W = {probs.shape[1:]} but {args.image} is {image.shape[:2]}")
    if (args.labels_out or args.figure) and probs.shape[0] > MAX_PNG_CLASSES:
        raise UsageError(f"--labels-out / --figure need at most {MAX_PNG_CLASSES} classes for a palette PNG, "
                         f"got {probs.shape[0]}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise UsageError(f"{args.probs} must hold floating-point values, got dtype {probs.dtype}")
    probs = probs.astype(np.float32, copy=False)
    try:
        probs_to_tensor(probs, logits=args.logits)  # bad values are a bad argument, found before any work
    except (ValueError, TypeError) as err:
        raise UsageError(f"{args.probs}: {err}") from None
    try:  # the refiners validate every option at their boundary: a refusal is a bad argument
        out = refine(image, probs, method=args.refine, logits=args.logits, **options)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--refine {args.refine}: {err}") from None
    save_probs(args.out, out)
    if args.labels_out:
        save_label_png(args.labels_out, out.argmax(0))
    if args.figure:
        write_label_figure(args.figure, image, out.argmax(0))
    return 0
