"""``clipapro evaluate``: score saved PNG predictions against a benchmark's ground truth (mIoU)."""

from __future__ import annotations

from clipapro.commands._common import add_figure_argument

NAME = "evaluate"
HELP = "score PNG label-map predictions (<id>.png) against a dataset: mIoU, aAcc, mAcc, per-class IoU"
DESCRIPTION = (
    "Score predicted label maps (PNG, named <id>.png, values = class indices of the dataset's class set) "
    "against the ground truth with mmsegmentation's IoU conventions (255 ignored; classes absent from both "
    "prediction and ground truth left out of the mean). Prints a Markdown table; --out writes JSON "
    "(percent). Datasets: voc21, voc20, context60, context59, cocostuff171, folder, hf:<name or folder>."
)


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, help="catalog name (voc21, ...) or hf:<name|dir>")
    parser.add_argument("--root", default=None, help="dataset root (e.g. VOCdevkit/VOC2012); unused for hf:")
    parser.add_argument("--split", default=None, help="split name (default: the dataset's evaluation split)")
    parser.add_argument("--pred-dir", required=True, help="folder of predicted label maps <id>.png")
    parser.add_argument("--out", default=None, help="write the metrics as JSON here (atomically)")
    add_figure_argument(parser, help="also write a per-class IoU bar chart (PNG) here")
    parser.add_argument("--csv", default=None, help="also write per-class IoU/Acc as CSV here")
    parser.add_argument("--markdown", default=None, help="also write the Markdown table here")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers reading PNGs")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="report and skip unreadable/mismatched samples instead of stopping")
    parser.add_argument("--classes", default=None,
                        help="class set for folder/hf datasets (name, .txt/.json file or comma list)")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="folder/hf only: label 0 -> ignore, others -1 (mmseg reduce_zero_label)")
    parser.add_argument("--image-column", default="image", help="hf: image column")
    parser.add_argument("--mask-column", default="annotation", help="hf: label-map column")
    parser.add_argument("--id-column", default=None, help="hf: id column (default: zero-padded row index)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")


def _dataset_options(args) -> dict:
    from clipapro.commands._common import UsageError

    name = args.dataset
    generic = name == "folder" or name.startswith("hf:")
    if not generic and (args.classes or args.reduce_zero_label):
        raise UsageError(f"--classes/--reduce-zero-label apply to folder and hf: datasets, not {name!r}")
    if not generic:
        return {}
    if not args.classes:
        raise UsageError(f"--classes is required for --dataset {name}")
    opts = {"classes": args.classes, "reduce_zero": args.reduce_zero_label}
    if name.startswith("hf:"):
        opts.update(image_column=args.image_column, mask_column=args.mask_column, id_column=args.id_column)
    return opts


def run(args) -> int:
    from pathlib import Path

    from clipapro.commands._common import UsageError
    from clipapro.data import build_dataset, get_dataset_spec
    from clipapro.io import write_bytes_atomic, write_json_atomic
    from clipapro.metrics import evaluate_predictions

    if args.workers < 0:
        raise UsageError("--workers must be >= 0")
    try:
        get_dataset_spec(args.dataset)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.root is None and not args.dataset.startswith("hf:"):
        raise UsageError(f"--root is required for --dataset {args.dataset}")
    if not Path(args.pred_dir).is_dir():
        raise UsageError(f"--pred-dir {args.pred_dir} is not a folder")
    dataset = build_dataset(args.dataset, args.root, split=args.split, **_dataset_options(args))
    metrics = evaluate_predictions(dataset, args.pred_dir, num_workers=args.workers,
                                   skip_corrupt=args.skip_corrupt, progress=not args.quiet)
    result = {"dataset": args.dataset, "split": args.split or get_dataset_spec(args.dataset).default_split,
              **metrics.as_dict()}
    if args.out:
        write_json_atomic(args.out, result)
    if args.csv:
        write_bytes_atomic(args.csv, metrics.to_csv().encode())
    table = metrics.to_markdown(title=f"{args.dataset} {result['split']}: {len(dataset)} images")
    if args.markdown:
        write_bytes_atomic(args.markdown, table.encode())
    if args.figure:
        from clipapro.viz import save_iou_bars

        save_iou_bars(args.figure, result)
    if not args.quiet:
        print(table)
    else:
        print(f"mIoU {result['mIoU']}  aAcc {result['aAcc']}  mAcc {result['mAcc']}")
    return 0
