"""``clipapro train-instances``: a Mask R-CNN trained on boxes only (APro box loss on the mask head).

Example (8 GPUs, COCO; on one CPU drop ``torchrun`` and ``--nproc_per_node``)::

    torchrun --nproc_per_node=8 -m clipapro train-instances \\
        --annotations coco/annotations/instances_train2017.json --images coco/train2017 \\
        --val-annotations coco/annotations/instances_val2017.json --val-images coco/val2017 \\
        --model maskrcnn_resnet50_fpn --backbone-weights resnet50-imagenet.pth \\
        --steps 90000 --batch-size 2 --lr 0.02 --out-dir runs/coco_box_maskrcnn
"""

from __future__ import annotations

from clipapro._validate import signature_defaults
from clipapro.commands._common import flag_error

NAME = "train-instances"
HELP = ("train a Mask R-CNN from boxes only: the mask head learns from the APro box loss "
        "(resumable, DDP under torchrun)")


def add_arguments(parser) -> None:
    from clipapro.instances.job import InstanceTrainJob
    from clipapro.instances.models import INSTANCE_MODELS

    d = signature_defaults(InstanceTrainJob.create)
    g = parser.add_argument_group("data (boxes only: masks in the training files are never read)")
    g.add_argument("--annotations", default=None, help="COCO instance JSON of the training set")
    g.add_argument("--images", default=None, help="image folder the JSON's file_name entries are relative to")
    g.add_argument("--voc-root", default=None, help="instead: a VOCdevkit/VOC2012 folder (Annotations/*.xml)")
    g.add_argument("--split", default=d["split"], help="VOC training split (ImageSets/Main or Segmentation)")
    g.add_argument("--val-annotations", default=None, help="COCO JSON with masks for periodic mask AP")
    g.add_argument("--val-images", default=None, help="image folder of --val-annotations (default: --images)")
    g.add_argument("--val-split", default=None, help="VOC split with SegmentationObject masks, e.g. val")
    g.add_argument("--eval-every", type=int, default=d["eval_every"],
                   help="mask AP on the val set every N steps (0: only at the end)")
    g.add_argument("--eval-limit", type=int, default=None, help="periodic evaluation on the first N val images")
    m = parser.add_argument_group("model and optimisation")
    m.add_argument("--model", default=d["model"], help=f"one of {', '.join(sorted(INSTANCE_MODELS))}")
    m.add_argument("--backbone-weights", default=None,
                   help="local file with an ImageNet ResNet-50 state_dict (never downloaded; default: random init)")
    m.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="torchvision MaskRCNN keyword, e.g. box_batch_size_per_image=128 (repeatable)")
    m.add_argument("--mask-loss-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="APro box loss option of the RoI heads: context (loss frame = RoI grown by it, default 1.5), "
                        "roi_size, projection_weight, global_weight, local_weight (default 0 here), zeta_g (default "
                        "0.02 here), zeta_label, label_gp, zeta_s, kernel_size, dilation, iterations (repeatable)")
    m.add_argument("--min-size", type=int, default=d["min_size"], help="resize: shorter image side")
    m.add_argument("--max-size", type=int, default=d["max_size"], help="resize: cap on the longer side")
    m.add_argument("--steps", type=int, default=d["steps"], help="total optimisation steps")
    m.add_argument("--batch-size", type=int, default=d["batch_size"], help="images per step per process")
    m.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate (warm-up, x0.1 at 62%% and 85%%)")
    m.add_argument("--weight-decay", type=float, default=d["weight_decay"], help="SGD weight decay")
    m.add_argument("--warmup-steps", type=int, default=d["warmup_steps"], help="linear warm-up steps")
    m.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    m.add_argument("--no-amp", action="store_true", help="disable mixed precision on GPU")
    m.add_argument("--seed", type=int, default=d["seed"], help="seed of weights, data order and flips")
    r = parser.add_argument_group("run control")
    r.add_argument("--out-dir", required=True,
                   help="run folder (config.json, log.jsonl, checkpoints/, predictions.json, metrics.json)")
    r.add_argument("--ckpt-every", type=int, default=d["ckpt_every"], help="checkpoint every N steps")
    r.add_argument("--log-every", type=int, default=d["log_every"], help="log the losses every N steps")
    r.add_argument("--stop-at", type=int, default=None, help="stop after this step (resume later)")
    r.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --out-dir")
    r.add_argument("--workers", type=int, default=d["workers"], help="data-loader worker processes")
    r.add_argument("--device", default=d["device"], help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


_FLAGS = {"model_options": "--model-opt", "mask_loss_options": "--mask-loss-opt", "flip": "--no-flip",
          "amp": "--no-amp", "resume": "--no-resume", "annotations": "--annotations", "images": "--images"}


def run(args) -> int:
    from clipapro.commands._common import parse_options
    from clipapro.instances.job import InstanceTrainJob

    try:  # every check that can fail runs before any work
        job = InstanceTrainJob.create(
            annotations=args.annotations, images=args.images, voc_root=args.voc_root, split=args.split,
            val_annotations=args.val_annotations, val_images=args.val_images, val_split=args.val_split,
            model=args.model, backbone_weights=args.backbone_weights,
            model_options=parse_options(args.model_opt, "--model-opt"),
            mask_loss_options=parse_options(args.mask_loss_opt, "--mask-loss-opt"), min_size=args.min_size,
            max_size=args.max_size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, flip=not args.no_flip,
            amp=not args.no_amp, seed=args.seed, eval_every=args.eval_every, eval_limit=args.eval_limit,
            ckpt_every=args.ckpt_every, log_every=args.log_every, stop_at=args.stop_at, resume=not args.no_resume,
            workers=args.workers, device=args.device, out_dir=args.out_dir, progress=not args.no_progress)
    except (ValueError, TypeError, ImportError, FileNotFoundError, PermissionError) as err:
        raise flag_error(err, args, _FLAGS) from err
    result = job.run()
    if job.info.is_main and result.get("preempted"):
        print(f"train-instances: stopped by a signal after step {result['step']}; checkpoint saved in "
              f"{args.out_dir}, rerun the same command to resume")
    elif job.info.is_main:
        ev = result.get("eval")
        extra = ""
        if ev:
            extra = (f", val mask AP {ev['mask']['AP']:.1f} (AP50 {ev['mask']['AP50']:.1f}); filled boxes "
                     f"AP {ev['box_filled']['AP']:.1f} (AP50 {ev['box_filled']['AP50']:.1f})")
        print(f"train-instances: step {result['step']}, last loss {result['last_loss']}{extra}; "
              f"run folder {args.out_dir}")
    return 0
