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
    "map, value = class index) and <stem>_overlay.png per image into --out-dir. --protocol NAME follows a "
    "published preset exactly (`clipapro prompts --protocols` lists them, e.g. naclip-voc21: its classes, "
    "templates, resizing, windows, thresholds and NACLIP's PAMR); flags given explicitly override it. "
    "Without --protocol, segment follows NACLIP's protocol (the strongest CLIP-only one the presets "
    "reproduce: its README reports 64.07 VOC21 / 83.03 VOC20 mIoU, MaskCLIP's 49.5 VOC20) with clipapro's default "
    "refiner (--refine auto) instead of PAMR; --protocol none gives predict_probs' plain defaults. "
    "Without --pretrained the model's usual weights tag is used (openai for ViT-B-16, RN50, ...); offline, "
    "pass a local checkpoint."
)


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    parser.add_argument("--protocol", default=None, metavar="NAME",
                        help="published preset (naclip-voc21, sclip-context60, ...; `clipapro prompts --protocols`) "
                             "or a preset .json; 'none' for no preset (default: NACLIP's protocol with "
                             "--refine auto instead of PAMR)")
    parser.add_argument("--classes", default=None,
                        help="class set: a name (see `clipapro prompts`), a .txt/.json file or 'cat,dog,...' "
                             "(default: the protocol's; required otherwise)")
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
    parser.add_argument("--templates", default=None,
                        help="template set name, file, or one template containing {} (default: the protocol's, "
                             "else imagenet80)")
    parser.add_argument("--dense-mode", default=None,
                        choices=("maskclip", "clearclip", "sclip", "naclip", "vanilla"),
                        help="last-block dense path (default: the protocol's)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="resize the short side to this first with clipapro's torch resizing (replaces a "
                             "protocol's mmcv rescale to (2048, 336) or similar)")
    parser.add_argument("--slide-crop", type=int, default=None,
                        help="sliding-window crop (e.g. 224; 0 = whole image; default: the protocol's)")
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
    parser.add_argument("--synonyms", default=None, choices=("max-cosine", "max-prob"),
                        help="how a class with several prompt names scores (max-prob = SCLIP/NACLIP)")
    from clipapro.refiners import list_refiners

    parser.add_argument("--refine", default=None,
                        help=f"refiner of the probabilities: auto or one of {', '.join(list_refiners())}; none skips "
                             "refinement; a named refiner replaces a preset's own (default: the preset's, else auto)")
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
    parser.add_argument("--precision", default=None, choices=("fp32", "fp16", "bf16"),
                        help="model precision (default: the protocol's on a GPU (fp16 for the newer repos), "
                             "fp32 on a CPU, as their clip.load does there)")
    parser.add_argument("--save-probs", default=None, metavar="DIR",
                        help="also write the (K, H, W) float32 probabilities as DIR/<stem>.npy")
    parser.add_argument("--cache-dir", default=None,
                        help="text-classifier cache folder (default: <out-dir>/.text_cache)")


def _check_args(args) -> None:
    for opt in ("short_side", "slide_crop", "slide_stride"):
        value = getattr(args, opt)
        if value is not None and value < (0 if opt == "slide_crop" else 1):
            raise UsageError(f"--{opt.replace('_', '-')} must be >= 1 (--slide-crop 0: whole image), got {value}")
    if args.slide_stride is not None and args.slide_crop is None:
        raise UsageError("--slide-stride needs --slide-crop")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must lie in [0, 1], got {args.alpha}")
    if args.random_init and args.pretrained:
        raise UsageError("--random-init and --pretrained exclude each other")


def _protocol_options(args):
    """(protocol or None, predict options, refine method or None) from --protocol and explicit flags."""
    from clipapro.protocols import DEFAULT_PROTOCOL, get_protocol

    name = args.protocol
    proto = None
    if name is None or name.lower() != "none":
        try:
            proto = get_protocol(DEFAULT_PROTOCOL if name is None else name)
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from err
    explicit = {"dense_mode": args.dense_mode, "slide_crop": args.slide_crop, "slide_stride": args.slide_stride,
                "short_side": args.short_side, "logit_scale": args.logit_scale,
                "key_smoothing": args.key_smoothing, "prompt_denoise": args.prompt_denoise,
                "bg_threshold": args.bg_threshold, "area_threshold": args.area_threshold,
                "synonyms": args.synonyms}
    opts = {k: v for k, v in explicit.items() if v is not None}
    refine = args.refine
    if refine is not None or (name is None and proto is not None):
        opts["cosine_refiner"] = False  # the preset's own refinement (NACLIP's PAMR) is replaced
        refine = "auto" if refine is None else refine
    elif proto is None:
        refine = "auto"
    return proto, opts, None if refine == "none" else refine


def _planned_outputs(args, out_dir):
    outs = []
    for path in args.images:
        stem = Path(path).stem
        outs.append(out_dir / f"{stem}.png")
        if not args.no_overlay:
            outs.append(out_dir / f"{stem}_overlay.png")
        if args.save_probs:
            outs.append(Path(args.save_probs) / f"{stem}.npy")
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
    from clipapro.io import MAX_PNG_CLASSES, atomic_path, image_to_tensor, save_label_png, save_probs
    from clipapro.refiners import make_refiner

    proto, opts, refine_method = _protocol_options(args)
    classes = args.classes or (proto.classes if proto is not None else None)
    if classes is None:
        raise UsageError("--classes is required (this protocol has no class set)")
    templates = args.templates or (proto.templates if proto is not None else "imagenet80")
    pm = proto.model if proto is not None else {}
    precision = args.precision or (pm.get("precision", "fp32") if str(args.device).startswith("cuda") else "fp32")
    out_dir = Path(args.out_dir)
    for path in args.images:
        input_file(path, "image")
    check_outputs_apart(args.images, _planned_outputs(args, out_dir))  # before any work
    try:
        options = parse_options(args.refine_opt, "--refine-opt")
        refine = None if refine_method is None else make_refiner(refine_method, **options)
    except (ValueError, TypeError, ImportError) as err:
        raise UsageError(str(err)) from None
    model = create_model(args.model, pretrained=args.pretrained, backend=args.backend, device=args.device,
                         precision=precision, random_init=args.random_init, quick_gelu=args.quick_gelu)
    cache = args.cache_dir or str(out_dir / ".text_cache")
    clf = build_text_classifier(model, classes, templates=templates, cache_dir=cache)
    if clf.num_classes > MAX_PNG_CLASSES:
        raise UsageError(f"{clf.num_classes} classes do not fit a palette PNG (at most {MAX_PNG_CLASSES})")
    from clipapro.viz import overlay

    for path in tqdm(args.images, desc="segment", unit="img", disable=len(args.images) < 2):
        stem = Path(path).stem
        if args.skip_existing and (out_dir / f"{stem}.png").is_file():
            continue
        image = image_to_tensor(read_input_image(path))
        probs = predict_probs(model, image.to(args.device), clf, protocol=proto, **opts).float().cpu()
        if refine is not None:
            probs = refine(image, probs)
        labels = probs.argmax(dim=1)[0].numpy().astype("uint8")
        if args.save_probs:
            save_probs(Path(args.save_probs) / f"{stem}.npy", probs[0].numpy())
        if not args.no_overlay:  # label map last: it marks the image as done for --skip-existing
            with atomic_path(out_dir / f"{stem}_overlay.png") as tmp:
                Image.fromarray(overlay(image[0], labels, alpha=args.alpha)).save(tmp, format="PNG")
        write_label_figure(figure_path(args.figure, path, len(args.images)), image[0], labels, clf.names)
        save_label_png(out_dir / f"{stem}.png", labels)
        present = sorted({int(v) for v in labels.flat})
        tqdm.write(f"{path}: " + ", ".join(f"{i}={clf.names[i]}" for i in present))
    return 0
