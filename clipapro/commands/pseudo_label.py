"""``clipapro pseudo-label``: CLIP dense probabilities refined with the image into pseudo labels.

Example (one GPU, or ``torchrun --nproc_per_node=8 -m clipapro pseudo-label ...`` for eight)::

    python -m clipapro pseudo-label --dataset voc21 --root data/VOCdevkit/VOC2012 --split trainaug \\
        --model ViT-B-16 --pretrained openai --refine apro --soft --out-dir runs/voc_pl
"""

from __future__ import annotations

NAME = "pseudo-label"
HELP = "write APro-refined CLIP pseudo labels for a dataset split (resumable, torchrun-sharded)"


def add_arguments(parser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", required=True,
                   help="catalog name (voc21, context60, cocostuff171, folder, hf:...)")
    g.add_argument("--root", default=None, help="dataset root folder")
    g.add_argument("--split", default=None,
                   help="split to label (e.g. trainaug); default: train (folder datasets: all images)")
    g.add_argument("--classes", default=None,
                   help="class set of the text classifier (name, file, comma list); default: the dataset's")
    g.add_argument("--dataset-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for the dataset reader (repeatable)")
    g.add_argument("--limit", type=int, default=None, help="label only the first N images (smoke runs)")
    c = parser.add_argument_group("CLIP")
    c.add_argument("--protocol", default=None, metavar="NAME",
                   help="published preset (naclip-voc21, ...; `clipapro prompts --protocols`): its class file, "
                        "templates, predict options and refinement (NACLIP's PAMR); explicit flags override it")
    c.add_argument("--model", default="ViT-B-16", help="CLIP model name (clipapro.clip.create_model)")
    c.add_argument("--pretrained", default=None, help="pretrained tag or local checkpoint path")
    c.add_argument("--backend", default="open_clip", help="open_clip or transformers")
    c.add_argument("--precision", default="fp32", help="fp32, fp16 or bf16")
    c.add_argument("--templates", default=None, help="prompt template set (default: the protocol's, else imagenet80)")
    c.add_argument("--text-cache", default=None, help="folder caching text embeddings")
    c.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for create_model (repeatable)")
    c.add_argument("--clip-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra option for predict_probs, e.g. short_side=336 (repeatable)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda (torchrun: cuda:LOCAL_RANK)")
    r = parser.add_argument_group("refinement and output")
    r.add_argument("--refine", default=None,
                   help="refiner: auto, apro, none, or a clipapro.refine method (default: auto; with --protocol "
                        "the preset's own refinement, which a named refiner replaces)")
    r.add_argument("--refine-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="refiner option, e.g. zeta_g=0.02 (repeatable)")
    r.add_argument("--refine-workers", type=int, default=0,
                   help="threads refining and writing while CLIP predicts the next images (GPU runs); 0: inline")
    r.add_argument("--threshold", type=float, default=None,
                   help="pixels whose top refined probability is below this become 255 (ignored in training)")
    r.add_argument("--soft", action="store_true", help="also write float16 soft labels (soft/<id>.npz)")
    r.add_argument("--out-dir", required=True, help="output folder (manifest.json, labels/, soft/)")
    r.add_argument("--overwrite", action="store_true",
                   help="accept an out dir made with another configuration and redo every image")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from clipapro.cli import UsageError
    from clipapro.pseudo.pipeline import PseudoLabelJob

    try:
        job = PseudoLabelJob.from_args(args)  # every check that can fail runs before any work
    except (ValueError, FileNotFoundError, PermissionError) as err:
        raise UsageError(str(err)) from err
    stats = job.run()
    if job.info.is_main:
        print(f"pseudo-label: {stats['done']} written, {stats['skipped']} already present on rank 0; "
              f"{stats['total']} images in {job.out_dir}"
              + (" (complete)" if stats.get("complete") else f" ({stats['missing']} still missing)"))
    return 0
