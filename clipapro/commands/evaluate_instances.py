"""``clipapro evaluate-instances``: COCO mask (or box) AP of instance predictions via pycocotools."""

from __future__ import annotations

NAME = "evaluate-instances"
HELP = "score COCO-format instance predictions: mask AP, AP50, AP75, APs/m/l and AP per class (pycocotools)"
DESCRIPTION = (
    HELP + ". PREDICTIONS is a COCO results JSON (a list of {image_id, category_id, segmentation: RLE, score}, "
    "as detectron2, torchvision's references, clipapro box2mask --coco and clipapro train-instances write it). "
    "Ground truth: --gt a COCO instance JSON, or --dataset NAME --root ROOT from the instance catalog (voc: "
    "VOC2012 XML + SegmentationObject PNGs; coco2017; pennfudan). AP is COCOeval's: IoU 0.50:0.95, 101-point "
    "precision, 100 detections per image, in percent; nan where a value has no ground truth."
)


def add_arguments(parser) -> None:
    from clipapro.data.registry import list_instance_datasets

    parser.add_argument("predictions", help="COCO results JSON (list of predictions)")
    g = parser.add_argument_group("ground truth")
    g.add_argument("--gt", metavar="JSON", help="COCO instance annotations JSON")
    g.add_argument("--images", metavar="DIR", help="image folder of --gt (needed for --figure only)")
    g.add_argument("--dataset", choices=list_instance_datasets(), help="instance catalog entry instead of --gt")
    g.add_argument("--root", help="root of --dataset (VOCdevkit/VOC2012, the COCO folder, pennfudan ...)")
    g.add_argument("--split", help="split of --dataset (default: its evaluation split)")
    parser.add_argument("--iou-type", choices=("segm", "bbox"), default="segm",
                        help="segm: mask AP; bbox: box AP of the predictions' bbox")
    parser.add_argument("--out", help="write the metrics as JSON here (atomically; nan -> null)")
    parser.add_argument("--markdown", help="also write the Markdown tables here")
    parser.add_argument("--figure", metavar="PATH",
                        help="also write a PNG: one image with its predicted masks and its ground truth")
    parser.add_argument("--figure-image", type=int, default=None, metavar="ID",
                        help="image_id of the --figure image (default: the first image with predictions)")
    parser.add_argument("--figure-score", type=float, default=0.5,
                        help="draw predictions scoring at least this in --figure")


def _load_predictions(path):
    import json

    from clipapro.commands._common import UsageError, input_file

    p = input_file(path, "predictions file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"predictions file {p} is not valid JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]  # a results file wrapped as a COCO dict
    if not isinstance(data, list):
        raise UsageError(f"predictions file {p}: expected a JSON list of COCO results, got {type(data).__name__}")
    return data


def _ground_truth(args):
    from clipapro.commands._common import UsageError, input_file
    from clipapro.data.base import DatasetItemError
    from clipapro.data.instances import CocoInstances
    from clipapro.data.registry import build_instance_dataset

    if (args.gt is None) == (args.dataset is None):
        raise UsageError("give the ground truth as --gt JSON or as --dataset NAME --root ROOT (one of them)")
    try:
        if args.gt is not None:
            if args.root or args.split:
                raise UsageError("--root and --split go with --dataset, not --gt")
            return CocoInstances(input_file(args.gt, "ground-truth file"), args.images)
        if args.root is None:
            raise UsageError(f"--dataset {args.dataset} needs --root")
        if args.images:
            raise UsageError("--images goes with --gt; --dataset finds its images under --root")
        return build_instance_dataset(args.dataset, args.root, split=args.split)
    except DatasetItemError as err:
        raise UsageError(str(err)) from None


def run(args) -> int:
    from clipapro.commands._common import UsageError, check_outputs_apart
    from clipapro.io import write_bytes_atomic, write_json_atomic
    from clipapro.metrics.instances import ap_markdown, json_safe, mask_ap

    inputs = [p for p in (args.predictions, args.gt) if p]
    check_outputs_apart(inputs, [p for p in (args.out, args.markdown, args.figure) if p])
    if args.figure and args.gt is not None and args.images is None:
        raise UsageError("--figure needs --images DIR (the photos of --gt)")
    predictions = _load_predictions(args.predictions)
    ds = _ground_truth(args)
    try:
        result = mask_ap(ds.coco, predictions, iou_type=args.iou_type)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{args.predictions}: {err}") from None
    table = ap_markdown(result)
    print(table, end="")
    if args.out:
        write_json_atomic(args.out, json_safe({**result, "predictions": str(args.predictions)}))
    if args.markdown:
        write_bytes_atomic(args.markdown, table.encode())
    if args.figure:
        _figure(args, ds, predictions)
    return 0


def _figure(args, ds, predictions) -> None:
    import numpy as np

    from clipapro._deps import require
    from clipapro.commands._common import UsageError
    from clipapro.viz import instance_label_map, save_panels

    mask_util = require("pycocotools.mask", what="--figure")
    image_id = args.figure_image
    if image_id is None:
        with_preds = {p["image_id"] for p in predictions}
        image_id = next((i for i in ds.ids if i in with_preds), ds.ids[0] if len(ds) else None)
    try:
        index = ds.index_of(image_id)
    except KeyError:
        raise UsageError(f"--figure-image {image_id} is not an image of the ground truth") from None
    sample = ds[index]
    h, w = sample.image.shape[1:]
    mine = sorted((p for p in predictions if p["image_id"] == image_id and p["score"] >= args.figure_score),
                  key=lambda p: -p["score"])[:254]
    if args.iou_type == "segm":
        pred = np.stack([mask_util.decode(p["segmentation"]).astype(bool) for p in mine]) if mine \
            else np.zeros((0, h, w), bool)
    else:
        pred = np.zeros((len(mine), h, w), bool)
        for k, p in enumerate(mine):
            x, y, bw, bh = (int(round(v)) for v in p["bbox"])
            pred[k, max(y, 0):y + bh, max(x, 0):x + bw] = True
    names = ds.category_names
    labels = ["none"] + [f"{names.get(p['category_id'], p['category_id'])} {p['score']:.2f}" for p in mine]
    panels = {f"predicted (score >= {args.figure_score:g})": instance_label_map(pred, [p["score"] for p in mine])}
    if sample.masks is not None and len(sample) <= 254:
        gt = instance_label_map(sample.masks)
        panels["ground truth"] = gt + np.where(gt > 0, len(mine), 0)
        labels += [f"gt {names.get(int(c), int(c))}" for c in sample.labels]
    out = save_panels(args.figure, sample.image, panels, labels, hide_index=0)
    print(f"figure: {out} (image_id {image_id})")
