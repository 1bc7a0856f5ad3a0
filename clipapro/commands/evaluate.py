"""``clipapro evaluate``: score saved PNG predictions against a benchmark's ground truth (mIoU)."""

from __future__ import annotations

from clipapro.commands._common import add_figure_argument

NAME = "evaluate"
HELP = "score PNG label-map predictions (<id>.png) against a dataset: mIoU, aAcc, mAcc, per-class IoU"
DESCRIPTION = (
    "Score predicted label maps (PNG, named <id>.png, values = class indices of the dataset's class set) "
    "against the ground truth with mmsegmentation's IoU conventions (255 ignored; classes absent from both "
    "prediction and ground truth left out of the mean). Prints a Markdown table; --out writes JSON "
    "(percent). Datasets: voc21, voc20, context60, context59, cocostuff171, folder, hf:<name or folder>. "
    "Pipeline mode: --protocol NAME (e.g. naclip-voc21; `clipapro prompts --protocols`) runs that published "
    "preset's CLIP pipeline over the dataset (its benchmark by default) and scores it; --pred-dir then keeps "
    "the predictions (resumable). Real CLIP weights are needed for a meaningful number."
)


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", default=None,
                        help="catalog name (voc21, ...) or hf:<name|dir> (default: the protocol's benchmark)")
    parser.add_argument("--root", default=None, help="dataset root (e.g. VOCdevkit/VOC2012); unused for hf:")
    parser.add_argument("--split", default=None, help="split name (default: the dataset's evaluation split)")
    parser.add_argument("--pred-dir", default=None,
                        help="folder of predicted label maps <id>.png (pipeline mode: where they are written)")
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
    g = parser.add_argument_group("pipeline mode (--protocol)")
    g.add_argument("--protocol", default=None, metavar="NAME", help="run this published preset, then score it")
    g.add_argument("--model", default=None, help="CLIP model (default: the protocol's, ViT-B-16)")
    g.add_argument("--pretrained", default=None, help="weights tag or local checkpoint (default: the protocol's)")
    g.add_argument("--backend", default="open_clip", choices=("open_clip", "transformers"), help="model library")
    g.add_argument("--quick-gelu", action="store_true", help="QuickGELU text tower (OpenAI weights from a file)")
    g.add_argument("--random-init", action="store_true", help="random weights (wiring smoke test; meaningless)")
    g.add_argument("--device", default="cpu", help="torch device")
    g.add_argument("--precision", default=None, choices=("fp32", "fp16", "bf16"),
                   help="default: the protocol's on a GPU, fp32 on a CPU")
    g.add_argument("--cache-dir", default=None, help="text-classifier cache folder")
    g.add_argument("--limit", type=int, default=None, help="only the first N images")


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


def _pipeline_predict(args, proto):
    """``predict(uint8 image) -> labels`` running the preset with the model the flags name."""
    from clipapro.clip import build_text_classifier, create_model, predict_probs
    from clipapro.io import image_to_tensor

    pm = proto.model
    if args.random_init:
        pretrained = None
    else:
        pretrained = args.pretrained or (pm.get("pretrained") if args.model is None else None)
    precision = args.precision or (pm["precision"] if str(args.device).startswith("cuda") else "fp32")
    model = create_model(args.model or pm["name"], pretrained=pretrained, backend=args.backend,
                         device=args.device, precision=precision, random_init=args.random_init,
                         quick_gelu=args.quick_gelu)
    clf = build_text_classifier(model, args.classes or proto.classes, templates=proto.templates,
                                cache_dir=args.cache_dir)

    def predict(image):
        return predict_probs(model, image_to_tensor(image).to(args.device), clf, protocol=proto)[0].argmax(0)

    return predict, {"protocol": proto.name, "model": args.model or pm["name"], "pretrained": pretrained,
                     "precision": precision, "random_init": args.random_init}


def run(args) -> int:
    from pathlib import Path

    from clipapro.commands._common import UsageError
    from clipapro.data import build_dataset, get_dataset_spec
    from clipapro.io import write_bytes_atomic, write_json_atomic
    from clipapro.metrics import evaluate_pipeline, evaluate_predictions

    proto = None
    if args.protocol is not None:
        from clipapro.protocols import get_protocol

        try:
            proto = get_protocol(args.protocol)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from err
        if args.dataset is None:
            args.dataset = proto.dataset
    if args.dataset is None:
        raise UsageError("--dataset is required (or --protocol with a benchmark)")
    if args.workers < 0:
        raise UsageError("--workers must be >= 0")
    try:
        get_dataset_spec(args.dataset)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.root is None and not args.dataset.startswith("hf:"):
        raise UsageError(f"--root is required for --dataset {args.dataset}")
    if proto is None and (args.pred_dir is None or not Path(args.pred_dir).is_dir()):
        raise UsageError(f"--pred-dir {args.pred_dir} is not a folder" if args.pred_dir else
                         "--pred-dir is required (or --protocol NAME to run a preset)")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    dataset = build_dataset(args.dataset, args.root, split=args.split, **_dataset_options(args))
    extra = {}
    if proto is None:
        metrics = evaluate_predictions(dataset, args.pred_dir, num_workers=args.workers,
                                       skip_corrupt=args.skip_corrupt, progress=not args.quiet)
    else:
        if args.limit is not None:
            dataset = _Limited(dataset, args.limit)
        predict, extra = _pipeline_predict(args, proto)
        metrics = evaluate_pipeline(predict, dataset, num_workers=args.workers, skip_corrupt=args.skip_corrupt,
                                    progress=not args.quiet, save_dir=args.pred_dir)
    result = {"dataset": args.dataset, "split": args.split or get_dataset_spec(args.dataset).default_split,
              **extra, **metrics.as_dict()}
    if proto is not None:
        result["reported"] = proto.reported
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
    if proto is not None and proto.reported["mIoU"] is not None:
        print(f"{proto.name}: published {proto.reported['mIoU']} mIoU ({proto.reported['source']})")
    return 0


class _Limited:
    """The first ``limit`` samples of a dataset (keeps ``classes`` / ``num_classes``)."""

    def __init__(self, dataset, limit: int):
        self.dataset, self.limit = dataset, min(limit, len(dataset))
        self.classes, self.num_classes = dataset.classes, dataset.num_classes

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int):
        if not 0 <= index < self.limit:
            raise IndexError(index)
        return self.dataset[index]
