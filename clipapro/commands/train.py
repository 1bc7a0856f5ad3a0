"""``clipapro train``: train a student segmentation network on pseudo labels (self-training) or on
sparse labels (scribbles, points: partial cross-entropy + APro soft-label loss, the APro paper's
Table 2 setting).

Example (8 GPUs; on one CPU drop ``torchrun`` and ``--nproc_per_node``)::

    torchrun --nproc_per_node=8 -m clipapro train --dataset voc21 --root data/VOCdevkit/VOC2012 \\
        --split trainaug --pseudo-dir runs/voc_pl --val-split val --student deeplabv3_resnet101 \\
        --steps 20000 --batch-size 2 --apro-weight 1.0 --out-dir runs/voc_student

Scribble-supervised (ScribbleSup PNGs mapped to class indices, 255 = unlabelled)::

    python -m clipapro train --dataset voc21 --root data/VOCdevkit/VOC2012 --split trainaug \
        --scribbles data/scribblesup_png --apro-weight 1.0 --apro-ramp 1000 --out-dir runs/voc_scribble
"""

from __future__ import annotations

from clipapro._validate import signature_defaults
from clipapro.commands._common import add_alias, add_dataset_arguments, flag_error

NAME = "train"
HELP = ("train a student segmentation net on pseudo labels, or on scribbles/points with partial cross-entropy "
        "+ APro soft-label loss (resumable, DDP under torchrun)")


def add_arguments(parser) -> None:
    from clipapro.pseudo.trainjob import TrainJob

    d = signature_defaults(TrainJob.create)  # the library's defaults, shown by --help
    g = add_dataset_arguments(
        parser, d, split_help="training split (labels come from --pseudo-dir, --scribbles or --points); "
        "default: train (folder: all images)",
        classes_help="class set for folder/hf datasets")
    labels = g.add_mutually_exclusive_group()
    labels.add_argument("--pseudo-dir", default=d["pseudo_dir"],
                        help="output of `clipapro pseudo-label` (one of --pseudo-dir, --scribbles, --points, "
                        "--clean-labels is required)")
    labels.add_argument("--scribbles", default=d["scribbles"], metavar="DIR",
                        help="sparse labels: DIR/<id>.png per training image, class indices (8- or 16-bit), "
                        "255 = unlabelled (ScribbleSup as TEL/APro use it); loss = partial cross-entropy + "
                        "APro soft-label loss (APro paper, Table 2 setting), see --apro-weight")
    labels.add_argument("--points", default=d["points"], metavar="DIR_OR_JSON",
                        help="sparse labels: DIR/<id>.json per image ([{\"x\", \"y\", \"class\"}, ...] or "
                        "{\"points\": [...]}), or one JSON {id: points}; same loss as --scribbles")
    labels.add_argument("--clean-labels", action="store_true",
                        help="train on the dataset's own masks instead (fully supervised upper bound)")
    g.add_argument("--point-radius", type=int, default=d["point_radius"],
                   help="--points: label a disk of this radius in pixels around each point (0: the pixel)")
    g.add_argument("--val-split", default=d["val_split"], help="split with ground truth for periodic evaluation")
    g.add_argument("--eval-every", type=int, default=d["eval_every"], help="evaluate every N steps (0: never)")
    g.add_argument("--eval-limit", type=int, default=d["eval_limit"], help="evaluate on the first N images only")
    m = parser.add_argument_group("student and optimisation")
    m.add_argument("--student", default=d["student"], help="student architecture (registry name)")
    m.add_argument("--backbone-weights", default=d["backbone_weights"],
                   help="local .pth of a pretrained backbone (clip_vit: the CLIP checkpoint)")
    m.add_argument("--student-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="student option, e.g. clip_model=ViT-B-16 or templates=imagenet80 (repeatable)")
    m.add_argument("--steps", type=int, default=d["steps"], help="total optimisation steps")
    m.add_argument("--batch-size", type=int, default=d["batch_size"], help="images per step per process")
    m.add_argument("--lr", type=float, default=d["lr"], help="initial learning rate (poly decay, power 0.9)")
    m.add_argument("--weight-decay", type=float, default=d["weight_decay"], help="SGD weight decay")
    m.add_argument("--crop-size", type=int, nargs=2, default=list(d["crop_size"]), metavar=("H", "W"),
                   help="training crop")
    m.add_argument("--scale-range", type=float, nargs=2, default=list(d["scale_range"]), metavar=("MIN", "MAX"),
                   help="random rescale range")
    m.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    m.add_argument("--apro-weight", type=float, default=d["apro_weight"],
                   help="weight of the online APro soft-label loss on the student's own predictions (0: off); "
                   "with --scribbles/--points the loss is partial cross-entropy + this weight x APro "
                   "soft-label loss (APro paper, Table 2 setting; clipapro.adapters.AProSoftLabelLoss, "
                   "labelled pixels clamped to their class)")
    m.add_argument("--apro-ramp", type=int, default=d["apro_ramp"], metavar="STEPS",
                   help="raise the APro weight linearly from 0 over the first STEPS steps (0: full weight at once)")
    m.add_argument("--apro-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the online loss (repeatable): clipapro.apro options on pseudo labels; "
                   "AProSoftLabelLoss options with --scribbles/--points (zeta_g, zeta_s, iterations, "
                   "distance=l1|ce, global_weight, local_weight, ...)")
    m.add_argument("--soft-weight", type=float, default=d["soft_weight"],
                   help="weight of the cross-entropy with stored soft labels (pseudo-label --soft; 0: off)")
    m.add_argument("--no-amp", action="store_true", help="disable mixed precision on GPU")
    m.add_argument("--seed", type=int, default=d["seed"], help="seed of weights, data order and augmentation")
    r = parser.add_argument_group("run control")
    r.add_argument("--out-dir", required=True, help="run folder (config.json, log.jsonl, checkpoints/)")
    add_alias(r, "--out", "--out-dir")
    r.add_argument("--ckpt-every", type=int, default=d["ckpt_every"], help="checkpoint every N steps")
    r.add_argument("--log-every", type=int, default=d["log_every"], help="log the loss every N steps")
    r.add_argument("--stop-at", type=int, default=d["stop_at"], help="stop after this step (resume later)")
    r.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --out-dir")
    r.add_argument("--workers", type=int, default=d["workers"], help="data-loader worker processes")
    r.add_argument("--device", default=d["device"], help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


#: TrainJob.create parameters whose flag is not their name
_FLAGS = {"apro_options": "--apro-opt", "student_options": "--student-opt", "dataset_options": "--dataset-opt",
          "flip": "--no-flip", "amp": "--no-amp", "resume": "--no-resume"}


def run(args) -> int:
    from clipapro.commands._common import parse_options
    from clipapro.pseudo.trainjob import TrainJob

    try:  # every check that can fail runs before any work
        job = TrainJob.create(
            dataset=args.dataset, root=args.root, split=args.split, classes=args.classes,
            dataset_options=parse_options(args.dataset_opt, "--dataset-opt"), pseudo_dir=args.pseudo_dir,
            clean_labels=args.clean_labels, val_split=args.val_split, eval_every=args.eval_every,
            eval_limit=args.eval_limit, student=args.student, backbone_weights=args.backbone_weights,
            student_options=parse_options(args.student_opt, "--student-opt"), steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, crop_size=tuple(args.crop_size),
            scale_range=tuple(args.scale_range), flip=not args.no_flip, apro_weight=args.apro_weight,
            apro_options=parse_options(args.apro_opt, "--apro-opt"), soft_weight=args.soft_weight,
            amp=not args.no_amp, seed=args.seed, ckpt_every=args.ckpt_every, log_every=args.log_every,
            stop_at=args.stop_at, resume=not args.no_resume, workers=args.workers, device=args.device,
            out_dir=args.out_dir, progress=not args.no_progress, scribbles=args.scribbles, points=args.points,
            point_radius=args.point_radius, apro_ramp=args.apro_ramp)
    except (ValueError, TypeError, ImportError, FileNotFoundError, PermissionError) as err:
        raise flag_error(err, args, _FLAGS) from err
    result = job.run()
    if job.info.is_main and result.get("preempted"):
        print(f"train: stopped by a signal after step {result['step']}; checkpoint saved in {args.out_dir}, "
              "rerun the same command to resume")
    elif job.info.is_main:
        ev = result.get("eval")
        print(f"train: step {result['step']}, last loss {result['last_loss']}"
              + (f", mIoU {ev['mIoU']:.2f}" if ev else "") + f"; run folder {args.out_dir}")
    return 0
