"""CLIP dense prediction -> optional refinement -> argmax, evaluated on a catalog dataset.

Needs real CLIP weights for meaningful numbers (an open_clip tag such as ``openai``, which downloads,
or a local checkpoint file / transformers folder). ``--random-init`` runs the same code with random
weights: a smoke test of the wiring, its mIoU means nothing.

Examples (from the repository root)::

    python eval/run_clip_pipeline.py --dataset voc21 --root data/VOCdevkit/VOC2012 \
        --model ViT-B-16 --pretrained /ckpt/ViT-B-16-openai.bin --quick-gelu --dense-mode naclip \
        --device cuda --out runs/voc21_naclip.json
    python eval/run_clip_pipeline.py --dataset context59 --root data/VOCdevkit/VOC2010 \
        --model ViT-B-16 --pretrained openai --refine apro --save-dir runs/ctx59_apro --limit 50

Protocol defaults come from the catalog entry (``clipapro.data.get_dataset_spec(name)``): short side
336 (448 for COCO-Stuff), 224/112 sliding windows, scored at the original label resolution with 255
ignored (SCLIP/NACLIP/ClearCLIP mmsegmentation configs). Refinement runs on the CPU at the original
resolution on the upsampled probabilities.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `eval` and `clipapro` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_predict(model, classifier, *, device="cpu", refine_method: str | None = None,
                  refine_options: dict | None = None, **probs_options):
    """``predict(image uint8 (H, W, 3)) -> labels int64 (H, W)``: predict_probs, optional refine, argmax."""
    import torch

    from clipapro.clip import predict_probs

    def predict(image):
        h, w = image.shape[:2]
        x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float().div_(255.0)
        with torch.no_grad():
            probs = predict_probs(model, x, classifier, out_size=(h, w), **probs_options)[0]  # (K, H, W)
        if refine_method:
            from clipapro.refiners import refine

            probs = refine(image, probs.float().cpu(), method=refine_method, **(refine_options or {}))
        return probs.argmax(0)

    return predict


def parse_args(argv=None):
    from clipapro.data import list_datasets

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", required=True, help=f"one of {list_datasets()} or hf:<name|dir>")
    p.add_argument("--root", default=None, help="dataset root folder")
    p.add_argument("--split", default=None, help="split (default: the benchmark's evaluation split)")
    p.add_argument("--classes", default=None, help="class set (default: the dataset's own)")
    p.add_argument("--model", default="ViT-B-16", help="open_clip model name / config JSON, or HF id/folder")
    p.add_argument("--pretrained", default=None, help="weights tag or local checkpoint (see create_model)")
    p.add_argument("--backend", default="open_clip", choices=["open_clip", "transformers"], help="backend")
    p.add_argument("--quick-gelu", action="store_true", help="OpenAI checkpoint file: use QuickGELU")
    p.add_argument("--random-init", action="store_true", help="random weights (smoke test only)")
    p.add_argument("--device", default="cpu", help="torch device for CLIP")
    p.add_argument("--templates", default="imagenet80", help="prompt template set")
    p.add_argument("--dense-mode", default="maskclip", help="dense path (clipapro.clip.DENSE_MODES)")
    p.add_argument("--short-side", type=int, default=None, help="resize short side (default: protocol)")
    p.add_argument("--slide-crop", type=int, default=None, help="window (default: protocol; 0 = whole image)")
    p.add_argument("--slide-stride", type=int, default=None, help="window stride (default: protocol)")
    p.add_argument("--bg-threshold", type=float, default=None, help="top prob below this -> background")
    p.add_argument("--refine", default=None, help="refinement (apro, crf-tree, pamr ...); none by default")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--skip-corrupt", action="store_true", help="report and skip unreadable samples")
    p.add_argument("--save-dir", default=None, help="save <id>.png predictions here (resumable)")
    p.add_argument("--out", default=None, help="metrics JSON (+ .csv, .md beside it)")
    p.add_argument("--cache-dir", default=None, help="text-classifier cache folder")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from clipapro.clip import build_text_classifier, create_model
    from clipapro.data import build_dataset, get_dataset_spec
    from eval.live import evaluate_live

    spec = get_dataset_spec(args.dataset)
    opts = {"classes": args.classes} if args.classes else {}
    dataset = build_dataset(args.dataset, args.root, split=args.split, **opts)
    model = create_model(args.model, pretrained=args.pretrained, backend=args.backend, device=args.device,
                         random_init=args.random_init, quick_gelu=args.quick_gelu)
    classes = getattr(dataset, "class_set", None) or args.classes
    classifier = build_text_classifier(model, classes, templates=args.templates, cache_dir=args.cache_dir)
    crop = spec.crop if args.slide_crop is None else (args.slide_crop or None)
    protocol = {
        "short_side": spec.short_side if args.short_side is None else args.short_side,
        "slide_crop": crop,
        "slide_stride": (spec.stride if args.slide_stride is None else args.slide_stride) if crop else None,
        "dense_mode": args.dense_mode, "bg_threshold": args.bg_threshold,
    }
    predict = build_predict(model, classifier, device=args.device, refine_method=args.refine, **protocol)
    extra = {"model": args.model, "pretrained": args.pretrained, "backend": args.backend,
             "random_init": args.random_init, "templates": args.templates, "refine": args.refine, **protocol}
    metrics = evaluate_live(predict, dataset=dataset, split=args.split or spec.default_split,
                            num_workers=args.workers, limit=args.limit, skip_corrupt=args.skip_corrupt,
                            save_dir=args.save_dir, out=args.out, extra=extra)
    print(metrics.to_markdown(title=f"{args.dataset}: {metrics.num_images} images"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
