"""``clipapro pseudo-label``: CLIP dense probabilities refined with the image into pseudo labels.

Example (one GPU, or ``torchrun --nproc_per_node=8 -m clipapro pseudo-label ...`` for eight)::

    python -m clipapro pseudo-label --dataset voc21 --root data/VOCdevkit/VOC2012 --split trainaug \\
        --model ViT-B-16 --pretrained openai --refine apro --soft --out-dir runs/voc_pl
"""

from __future__ import annotations

from clipapro._validate import signature_defaults
from clipapro.commands._common import add_alias, add_dataset_arguments, flag_error

NAME = "pseudo-label"
HELP = "write refined CLIP pseudo labels for a dataset split (resumable, torchrun-sharded)"


def add_arguments(parser) -> None:
    from clipapro.pseudo.pipeline import PseudoLabelJob
    from clipapro.refiners import list_refiners

    d = signature_defaults(PseudoLabelJob.create)  # the library's defaults, shown by --help
    g = add_dataset_arguments(
        parser, d, split_help="split to label (e.g. trainaug); default: train (folder datasets: all images)",
        classes_help="class set of the text classifier (name, file, comma list); default: the dataset's")
    g.add_argument("--limit", type=int, default=d["limit"], help="label only the first N images (smoke runs)")
    c = parser.add_argument_group("CLIP")
    c.add_argument("--protocol", default=d["protocol"], metavar="NAME",
                   help="published preset (naclip-voc21, ...; `clipapro prompts --protocols`): its class file, "
                        "templates, predict options and refinement (NACLIP's PAMR); explicit flags override it")
    c.add_argument("--model", default=d["model"], help="CLIP model name (clipapro.clip.create_model)")
    c.add_argument("--pretrained", default=d["pretrained"], help="pretrained tag or local checkpoint path")
    c.add_argument("--backend", default=d["backend"], help="open_clip or transformers")
    c.add_argument("--precision", default=d["precision"], help="fp32, fp16 or bf16")
    c.add_argument("--templates", default=d["templates"],
                   help="prompt template set (default: the protocol's, else imagenet80)")
    c.add_argument("--cache-dir", default=d["cache_dir"], help="folder caching text embeddings")
    add_alias(c, "--text-cache", "--cache-dir")
    c.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for create_model (repeatable)")
    c.add_argument("--clip-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for predict_probs, e.g. short_side=336 (repeatable)")
    c.add_argument("--device", default=d["device"], help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    r = parser.add_argument_group("refinement and output")
    r.add_argument("--refine", default=d["refine"],
                   help=f"refiner: auto or one of {', '.join(list_refiners())} (default: auto; with --protocol "
                        "the preset's own refinement, which a named refiner replaces)")
    r.add_argument("--refine-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="refiner option, e.g. zeta_g=0.02 (repeatable)")
    r.add_argument("--refine-workers", type=int, default=d["refine_workers"],
                   help="threads refining and writing while CLIP predicts the next images (GPU runs); 0: inline")
    r.add_argument("--threshold", type=float, default=d["threshold"],
                   help="pixels whose top refined probability is below this become 255 (ignored in training)")
    r.add_argument("--soft", action="store_true", help="also write float16 soft labels (soft/<id>.npz)")
    r.add_argument("--out-dir", required=True, help="output folder (manifest.json, labels/, soft/)")
    r.add_argument("--overwrite", action="store_true",
                   help="accept an out dir made with another configuration and redo every image")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


#: PseudoLabelJob.create parameters whose flag is not their name
_FLAGS = {"refine_options": "--refine-opt", "model_options": "--model-opt", "predict_options": "--clip-opt",
          "dataset_options": "--dataset-opt"}


def run(args) -> int:
    from clipapro.commands._common import parse_options
    from clipapro.pseudo.pipeline import PseudoLabelJob

    try:  # every check that can fail runs before any work
        job = PseudoLabelJob.create(
            dataset=args.dataset, root=args.root, split=args.split, classes=args.classes,
            dataset_options=parse_options(args.dataset_opt, "--dataset-opt"), limit=args.limit, model=args.model,
            pretrained=args.pretrained, backend=args.backend, precision=args.precision, templates=args.templates,
            cache_dir=args.cache_dir, model_options=parse_options(args.model_opt, "--model-opt"),
            predict_options=parse_options(args.clip_opt, "--clip-opt"), device=args.device, refine=args.refine,
            refine_options=parse_options(args.refine_opt, "--refine-opt"), refine_workers=args.refine_workers,
            threshold=args.threshold, soft=args.soft, out_dir=args.out_dir, overwrite=args.overwrite,
            progress=not args.no_progress, protocol=args.protocol)
    except (ValueError, TypeError, ImportError, FileNotFoundError, PermissionError) as err:
        raise flag_error(err, args, _FLAGS) from err
    stats = job.run()
    if job.info.is_main:
        print(f"pseudo-label: {stats['done']} written, {stats['skipped']} already present on rank 0; "
              f"{stats['total']} images in {job.out_dir}"
              + (" (complete)" if stats.get("complete") else f" ({stats['missing']} still missing)"))
    return 0
