"""``clipapro train``: self-train a student segmentation network on pseudo labels.

Example (8 GPUs; on one CPU drop ``torchrun`` and ``--nproc_per_node``)::

    torchrun --nproc_per_node=8 -m clipapro train --dataset voc21 --root data/VOCdevkit/VOC2012 \\
        --split trainaug --pseudo-dir runs/voc_pl --val-split val --student deeplabv3_resnet101 \\
        --steps 20000 --batch-size 2 --apro-weight 1.0 --out runs/voc_student
"""

from __future__ import annotations

NAME = "train"
HELP = "self-train a student segmentation net on pseudo labels (resumable, DDP under torchrun)"


def add_arguments(parser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", required=True,
                   help="catalog name (voc21, context60, cocostuff171, folder, ...)")
    g.add_argument("--root", default=None, help="dataset root folder")
    g.add_argument("--split", default=None,
                   help="training split (labels come from --pseudo-dir); default: train (folder: all images)")
    g.add_argument("--classes", default=None, help="class set for folder/hf datasets")
    g.add_argument("--dataset-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for the dataset reader (repeatable)")
    g.add_argument("--pseudo-dir", default=None,
                   help="output of `clipapro pseudo-label` (required unless --clean-labels)")
    g.add_argument("--clean-labels", action="store_true",
                   help="train on the dataset's own masks instead (fully supervised upper bound)")
    g.add_argument("--val-split", default=None, help="split with ground truth for periodic evaluation")
    g.add_argument("--eval-every", type=int, default=2000, help="evaluate every N steps (0: never)")
    g.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N images only")
    m = parser.add_argument_group("student and optimisation")
    m.add_argument("--student", default="deeplabv3_resnet101", help="student architecture (registry name)")
    m.add_argument("--backbone-weights", default=None,
                   help="local .pth of a pretrained backbone (clip_vit: the CLIP checkpoint)")
    m.add_argument("--student-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="student option, e.g. clip_model=ViT-B-16 or templates=imagenet80 (repeatable)")
    m.add_argument("--steps", type=int, default=20000, help="total optimisation steps")
    m.add_argument("--batch-size", type=int, default=8, help="images per step per process")
    m.add_argument("--lr", type=float, default=0.01, help="initial learning rate (poly decay, power 0.9)")
    m.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay")
    m.add_argument("--crop-size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"),
                   help="training crop")
    m.add_argument("--scale-range", type=float, nargs=2, default=[0.5, 2.0], metavar=("MIN", "MAX"),
                   help="random rescale range")
    m.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    m.add_argument("--apro-weight", type=float, default=0.0,
                   help="weight of the online APro soft-label loss on the student's own predictions (0: off)")
    m.add_argument("--apro-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="clipapro.apro option for the online loss (repeatable)")
    m.add_argument("--soft-weight", type=float, default=0.0,
                   help="weight of the cross-entropy with stored soft labels (pseudo-label --soft; 0: off)")
    m.add_argument("--no-amp", action="store_true", help="disable mixed precision on GPU")
    m.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation")
    r = parser.add_argument_group("run control")
    r.add_argument("--out", required=True, help="run folder (config.json, log.jsonl, checkpoints/)")
    r.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint every N steps")
    r.add_argument("--log-every", type=int, default=50, help="log the loss every N steps")
    r.add_argument("--stop-at", type=int, default=None, help="stop after this step (resume later)")
    r.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in --out")
    r.add_argument("--workers", type=int, default=4, help="data-loader worker processes")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from clipapro.cli import UsageError
    from clipapro.pseudo.trainjob import TrainJob

    try:
        job = TrainJob.from_args(args)  # every check that can fail runs before any work
    except (ValueError, FileNotFoundError, PermissionError) as err:
        raise UsageError(str(err)) from err
    result = job.run()
    if job.info.is_main and result.get("preempted"):
        print(f"train: stopped by a signal after step {result['step']}; checkpoint saved in {args.out}, "
              "rerun the same command to resume")
    elif job.info.is_main:
        ev = result.get("eval")
        print(f"train: step {result['step']}, last loss {result['last_loss']}"
              + (f", mIoU {100 * ev['mIoU']:.2f}" if ev else "") + f"; run folder {args.out}")
    return 0
