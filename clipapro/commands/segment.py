"""``clipapro segment``: open-vocabulary segmentation of image files with CLIP (+ refinement)."""

from __future__ import annotations

from pathlib import Path

from clipapro.commands._common import (
    UsageError,
    add_alias,
    add_figure_argument,
    check_outputs_apart,
    figure_path,
    input_file,
    read_input_image,
    write_label_figure,
)

NAME = "segment"
HELP = "segment images with a CLIP dense prediction (MaskCLIP/ClearCLIP/SCLIP/NACLIP) and refine it"
DESCRIPTION = (
    "Segment IMAGE files into the classes of a class set with a training-free CLIP dense prediction, "
    "refined with the image (clipapro.refine; --refine none skips it). Writes <stem>.png (palette label "
    "map, value = class index) and <stem>_overlay.png per image into --out-dir. Without --pretrained the "
    "model's usual weights tag is used (openai for ViT-B-16, RN50, ...); offline, pass a local checkpoint."
)


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    parser.add_argument("--classes", required=True,
                        help="class set: a name (see `clipapro prompts`), a .txt/.json file or 'cat,dog,...'")
    parser.add_argument("--out-dir", required=True, help="folder for <stem>.png and <stem>_overlay.png")
    parser.add_argument("--model", default="ViT-B-16",
                        help="open_clip model name, open_clip config .json, or transformers id/folder")
    parser.add_argument("--pretrained", default=None,
                        help="weights tag (openai, laion2b_s34b_b88k, ...) or local checkpoint path "
                             "(default: the model's usual tag)")
    parser.add_argument("--backend", default="open_clip", choices=("open_clip", "transformers"),
                        help="library that builds the model")
    parser.add_argument("--quick-gelu", action="store_true",
                        help="QuickGELU activations (OpenAI weights loaded from a file)")
    parser.add_argument("--random-init", action="store_true",
                        help="random weights (smoke tests only: the output is meaningless)")
    parser.add_argument("--templates", default="imagenet80",
                        help="template set name, file, or one template containing {}")
    parser.add_argument("--dense-mode", default="maskclip",
                        choices=("maskclip", "clearclip", "sclip", "naclip", "vanilla"),
                        help="last-block dense path (naclip/clearclip/sclip usually beat maskclip)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize the short side to this first (336 in SCLIP/NACLIP protocols)")
    parser.add_argument("--slide-crop", type=int, default=None, help="sliding-window crop (e.g. 224)")
    parser.add_argument("--slide-stride", type=int, default=None, help="sliding-window stride (e.g. 112)")
    parser.add_argument("--logit-scale", type=float, default=None,
                        help="softmax scale on cosines (default: per dense mode, 40-100)")
    parser.add_argument("--key-smoothing", type=float, default=None, metavar="THRESHOLD",
                        help="MaskCLIP key smoothing of patches whose top probability is below this "
                             "(MaskCLIP: 0.5; 1 smooths every patch)")
    parser.add_argument("--prompt-denoise", type=float, default=None,
                        help="drop classes whose peak probability is below this (MaskCLIP: 0.5)")
    parser.add_argument("--bg-threshold", type=float, default=None,
                        help="pixels with top probability below this become 'background'")
    parser.add_argument("--area-threshold", type=float, default=None,
                        help="drop non-background classes covering at most this fraction (SCLIP: 0.1)")
    parser.add_argument("--synonyms", default="max-cosine", choices=("max-cosine", "max-prob"),
                        help="how a class with several prompt names scores (max-prob = SCLIP/NACLIP)")
    from clipapro.refiners import list_refiners

    parser.add_argument("--refine", default="auto",
                        help=f"refiner (clipapro.refine): auto or one of {', '.join(list_refiners())}; none skips it")
    parser.add_argument("--refine-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="refiner option, e.g. w_tree=5 (repeatable)")
    add_alias(parser, "--refine-method", "--refine")
    add_alias(parser, "--no-refine", "--refine", flag=True, const="none")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the label colours")
    parser.add_argument("--no-overlay", action="store_true", help="write only the label maps")
    add_figure_argument(parser, many=True)
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip images whose label map exists already (resume an interrupted run)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                        help="model precision")
    parser.add_argument("--cache-dir", default=None,
                        help="text-classifier cache folder (default: <out-dir>/.text_cache)")


def _check_args(args) -> None:
    for opt in ("short_side", "slide_crop", "slide_stride"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            raise UsageError(f"--{opt.replace('_', '-')} must be >= 1, got {value}")
    if args.slide_stride is not None and args.slide_crop is None:
        raise UsageError("--slide-stride needs --slide-crop")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must lie in [0, 1], got {args.alpha}")
    if args.random_init and args.pretrained:
        raise UsageError("--random-init and --pretrained exclude each other")


def _planned_outputs(args, out_dir):
    outs = []
    for path in args.images:
        stem = Path(path).stem
        outs.append(out_dir / f"{stem}.png")
        if not args.no_overlay:
            outs.append(out_dir / f"{stem}_overlay.png")
        fig = figure_path(args.figure, path, len(args.images))
        if fig is not None:
            outs.append(fig)
    return outs


def run(args) -> int:
    _check_args(args)
    from PIL import Image
    from tqdm import tqdm

    from clipapro.clip import build_text_classifier, create_model, predict_probs
    from clipapro.commands._common import parse_options
    from clipapro.io import MAX_PNG_CLASSES, atomic_path, image_to_tensor, save_label_png
    from clipapro.refiners import make_refiner

    out_dir = Path(args.out_dir)
    for path in args.images:
        input_file(path, "image")
    check_outputs_apart(args.images, _planned_outputs(args, out_dir))  # before any work
    try:
        options = parse_options(args.refine_opt, "--refine-opt")
        refine = None if args.refine == "none" else make_refiner(args.refine, **options)
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from None
    model = create_model(args.model, pretrained=args.pretrained, backend=args.backend, device=args.device,
                         precision=args.precision, random_init=args.random_init, quick_gelu=args.quick_gelu)
    cache = args.cache_dir or str(out_dir / ".text_cache")
    clf = build_text_classifier(model, args.classes, templates=args.templates, cache_dir=cache)
    if clf.num_classes > MAX_PNG_CLASSES:
        raise UsageError(f"{clf.num_classes} classes do not fit a palette PNG (at most {MAX_PNG_CLASSES})")
    from clipapro.viz import overlay

    for path in tqdm(args.images, desc="segment", unit="img", disable=len(args.images) < 2):
        stem = Path(path).stem
        if args.skip_existing and (out_dir / f"{stem}.png").is_file():
            continue
        image = image_to_tensor(read_input_image(path))
        probs = predict_probs(model, image.to(args.device), clf, dense_mode=args.dense_mode,
                              slide_crop=args.slide_crop, slide_stride=args.slide_stride,
                              short_side=args.short_side, logit_scale=args.logit_scale,
                              key_smoothing=args.key_smoothing or False, prompt_denoise=args.prompt_denoise,
                              bg_threshold=args.bg_threshold, area_threshold=args.area_threshold,
                              synonyms=args.synonyms).cpu()
        if refine is not None:
            probs = refine(image, probs)
        labels = probs.argmax(dim=1)[0].numpy().astype("uint8")
        if not args.no_overlay:  # label map last: it marks the image as done for --skip-existing
            with atomic_path(out_dir / f"{stem}_overlay.png") as tmp:
                Image.fromarray(overlay(image[0], labels, alpha=args.alpha)).save(tmp, format="PNG")
        write_label_figure(figure_path(args.figure, path, len(args.images)), image[0], labels, clf.names)
        save_label_png(out_dir / f"{stem}.png", labels)
        present = sorted({int(v) for v in labels.flat})
        tqdm.write(f"{path}: " + ", ".join(f"{i}={clf.names[i]}" for i in present))
    return 0
