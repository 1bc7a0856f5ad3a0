"""``clipapro demo``: the toolkit on real photos with no download: box -> mask, scribble -> mask,
refinement of a coarse prediction, and CLIP segmentation when real weights are already on disk."""

from __future__ import annotations

NAME = "demo"
HELP = "run box->mask, scribble->mask and refinement on bundled photos (no download); figures to --out"
DESCRIPTION = (
    "Runs on photos that ship with scikit-image and matplotlib (astronaut, coffee, grace_hopper), with "
    "boxes and scribbles placed by hand in clipapro/commands/_demo_scenes.py: box -> instance mask, "
    "scribble -> class mask, and refinement (clipapro.refine: apro and the default method) of a simulated "
    "CLIP-like coarse prediction of the scribble mask, scored by mIoU against that mask (agreement with "
    "another propagation-based result, not accuracy against ground truth). "
    "Writes PNG figures and summary.json to --out and prints each path. Then segments the photos with CLIP "
    "when real weights are on disk (--pretrained PATH, or open_clip's Hugging Face cache); it never "
    "downloads, and says how to get the weights when they are missing."
)

_STEPS = ("boxes", "scribbles", "clip")  # scribbles includes the refinement of a coarse prediction
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_VOCABULARY = ["background: sky, wall, floor, table, tree, building", "person", "flag", "rocket", "helmet",
               "cup", "saucer", "spoon"]


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", default="demo_out", help="folder for the figures and summary.json")
    from clipapro.commands._common import add_alias

    add_alias(parser, "--out", "--out-dir")
    parser.add_argument("--max-side", type=int, default=320,
                        help="shrink each photo so its longer side is at most this (smaller is faster)")
    parser.add_argument("--model", default="ViT-B-16",
                        help="CLIP model for the segmentation step (open_clip name or config .json)")
    parser.add_argument("--pretrained", default=None, metavar="PATH",
                        help="local CLIP checkpoint for the segmentation step (default: look in the "
                             "Hugging Face cache that open_clip fills)")
    parser.add_argument("--no-quick-gelu", action="store_true",
                        help="the checkpoint was not trained with QuickGELU (not OpenAI's weights)")
    parser.add_argument("--steps", default=",".join(_STEPS),
                        help=f"comma list of the steps to run, from {', '.join(_STEPS)}")


def find_cached_weights(model: str):
    """Path of open_clip's cached weights for ``model``'s usual tag, or None. Looks in the Hugging Face
    hub cache only (``try_to_load_from_cache``): never touches the network."""
    try:
        import open_clip
        from huggingface_hub import try_to_load_from_cache

        from clipapro.clip import default_pretrained_tag

        cfg = open_clip.get_pretrained_cfg(model, default_pretrained_tag(model))
    except Exception:  # unknown model name, no tags, no hub library: nothing cached to find
        return None
    hub = str(cfg.get("hf_hub", ""))  # "org/repo/" (default file names) or "org/repo/file"
    if not hub:
        return None
    repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else tuple(hub.rsplit("/", 1))
    for name in ([filename] if filename else []) + list(_HF_FILES):
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str):
            return hit
    return None


def how_to_get_weights(model: str) -> str:
    return (f"CLIP step skipped: no {model} weights on this machine (looked in the Hugging Face cache; "
            "clipapro never downloads during the demo). To get them, on a machine with internet run\n"
            f"    python -c \"import open_clip; open_clip.create_model('{model}', pretrained='openai')\"\n"
            "which fills ~/.cache/huggingface/hub (copy that folder over), or download the checkpoint file "
            "open_clip_model.safetensors (or open_clip_pytorch_model.bin) of timm/vit_base_patch16_clip_224.openai "
            "and pass it:\n"
            f"    python -m clipapro demo --pretrained /path/to/open_clip_model.safetensors")


def _tensor(img):
    import torch

    from clipapro.io import image_to_tensor

    return image_to_tensor(img, dtype=torch.float64)[0]


def _save_input(out, name: str, array=None, *, labels=None, probs=None) -> str:
    """Write a demo input under ``out/inputs`` (photo PNG, scribble PNG or probabilities .npy) so the
    printed ``clipapro`` commands can be run on it; returns its path."""
    from PIL import Image

    from clipapro.io import atomic_path, save_label_png, save_probs

    path = out / "inputs" / name
    if labels is not None:
        save_label_png(path, labels)
    elif probs is not None:
        save_probs(path, probs)
    else:
        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
    return str(path)


def _boxes(out, max_side, summary):
    import numpy as np

    from clipapro.adapters import box_to_instances
    from clipapro.commands import _demo_scenes as scenes
    from clipapro.viz import save_panels

    for photo in scenes.BOXES:
        img = scenes.load_photo(photo, max_side)
        names, boxes = scenes.pixel_boxes(photo, img.shape[:2])
        inst = box_to_instances(_tensor(img), boxes).numpy()
        drawn = np.zeros(img.shape[:2], np.int64)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            drawn[round(y0):round(y1), round(x0):round(x1)] = i + 1
        path = save_panels(out / f"box2mask_{photo}.png", img, {"boxes": drawn, "masks from boxes": inst},
                           ["background", *names])
        areas = {n: round(float((inst == i + 1).mean()), 3) for i, n in enumerate(names)}
        box_arg = ";".join(",".join(f"{v:.0f}" for v in b) for b in boxes)
        cmd = (f"python -m clipapro box2mask {_save_input(out, f'{photo}.png', img)} --boxes \"{box_arg}\" "
               f"--out {out / f'{photo}_instances.png'}")
        summary["box2mask"][photo] = {"boxes": names, "mask_area_fraction": areas, "command": cmd}
        print(f"box -> mask      {path}  ({', '.join(names)})\n    same from the command line: {cmd}")


def _scribbles_and_refine(out, max_side, summary):
    import torch

    from clipapro.adapters import scribble_to_mask
    from clipapro.commands import _demo_scenes as scenes
    from clipapro.metrics import ConfusionMatrix
    from clipapro.refiners import DEFAULT_METHOD, refine
    from clipapro.viz import save_iou_bars, save_panels

    for k, photo in enumerate(scenes.SCRIBBLES):
        img = scenes.load_photo(photo, max_side)
        names, scribbles = scenes.scribble_map(photo, img.shape[:2])
        mask = scribble_to_mask(_tensor(img), torch.from_numpy(scribbles)).numpy()
        path = save_panels(out / f"scribble2mask_{photo}.png", img,
                           {"scribbles": scribbles, "mask from scribbles": mask}, names, hide_index=255)
        photo_file = _save_input(out, f"{photo}.png", img)
        cmd = (f"python -m clipapro scribble2mask {photo_file} "
               f"{_save_input(out, f'{photo}_scribbles.png', labels=scribbles)} --out {out / f'{photo}_mask.png'}")
        print(f"scribble -> mask {path}  ({', '.join(names)})\n    same from the command line: {cmd}")
        # a CLIP-like coarse prediction of the scribble mask, refined with the photo by two methods
        coarse = scenes.coarse_probs(mask, len(names), seed=k)
        methods = ["apro"] + ([DEFAULT_METHOD] if DEFAULT_METHOD != "apro" else [])
        outputs = {"coarse (simulated CLIP)": coarse}
        outputs.update({f"refined: {m}" + (" (auto)" if m == DEFAULT_METHOD else ""): refine(img, coarse, method=m)
                        for m in methods})
        scores = {}
        for tag, probs in outputs.items():
            cm = ConfusionMatrix(len(names), class_names=list(names))
            cm.update(torch.from_numpy(probs.argmax(0)), torch.from_numpy(mask))
            scores[tag] = cm.compute().as_dict()
        panels = {tag: probs.argmax(0) for tag, probs in outputs.items()}
        panels["reference: scribble mask"] = mask
        path = save_panels(out / f"refine_{photo}.png", img, panels, names)
        best = max(list(outputs)[1:], key=lambda t: scores[t]["mIoU"])
        bars = save_iou_bars(out / f"refine_{photo}_iou.png", scores[best],
                             title=f"{photo}, {best} vs the scribble mask: mIoU {scores[best]['mIoU']}")
        miou = {tag: scores[tag]["mIoU"] for tag in outputs}
        summary["scribble2mask"][photo] = {"classes": list(names), "scribbled_pixels": int((scribbles != 255).sum()),
                                           "command": cmd}
        refine_cmd = (f"python -m clipapro refine {photo_file} {_save_input(out, f'{photo}_coarse.npy', probs=coarse)} "
                      f"--refine apro --out {out / f'{photo}_refined.npy'} --labels-out {out / f'{photo}_refined.png'}")
        summary["refine"][photo] = {"reference": "scribble mask", "mIoU": miou, "command": refine_cmd}
        print(f"refinement       {path}  mIoU vs the scribble mask: "
              + ", ".join(f"{t} {v}" for t, v in miou.items()) + f" ({bars.name})"
              + f"\n    same from the command line: {refine_cmd}")


def _segment(args, out, summary) -> None:
    weights = args.pretrained or find_cached_weights(args.model)
    if weights is None:
        summary["segment"] = "skipped: no weights on disk"
        print(how_to_get_weights(args.model))
        return
    from clipapro.clip import create_model
    from clipapro.commands import _demo_scenes as scenes
    from clipapro.predictor import SegmentationPredictor
    from clipapro.viz import save_overlay

    model = create_model(args.model, pretrained=weights, quick_gelu=not args.no_quick_gelu)
    predictor = SegmentationPredictor(model, classes=_VOCABULARY, templates="imagenet7", dense_mode="naclip",
                                      cache_dir=str(out / ".text_cache"))
    summary["segment"] = {"weights": str(weights), "dense_mode": "naclip", "refine": predictor.refine_method}
    for photo in ("astronaut", "coffee", "grace_hopper"):
        predictor.set_image(scenes.load_photo(photo, args.max_side))
        labels, _ = predictor.predict()
        names = predictor.class_names()
        path = save_overlay(out / f"segment_{photo}.png", scenes.load_photo(photo, args.max_side), labels, names)
        present = sorted({names[i] for i in set(labels.ravel().tolist())})
        summary["segment"][photo] = present
        print(f"CLIP segment     {path}  ({', '.join(present)})")


def run(args) -> int:
    import os
    import time
    from pathlib import Path

    from clipapro.commands._common import UsageError
    from clipapro.io import write_json_atomic

    if args.max_side < 32:
        raise UsageError(f"--max-side must be >= 32, got {args.max_side}")
    steps = [x.strip() for x in args.steps.split(",") if x.strip()]
    if not steps or set(steps) - set(_STEPS):
        raise UsageError(f"--steps must be a comma list of {', '.join(_STEPS)}, got {args.steps!r}")
    if args.pretrained is not None and not Path(args.pretrained).is_file():
        raise UsageError(f"--pretrained {args.pretrained} is not a file")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing below may download
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = {"max_side": args.max_side, "box2mask": {}, "scribble2mask": {}, "refine": {}}
    if "boxes" in steps:
        _boxes(out, args.max_side, summary)
    if "scribbles" in steps:
        _scribbles_and_refine(out, args.max_side, summary)
    if "clip" in steps:
        _segment(args, out, summary)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    write_json_atomic(out / "summary.json", summary)
    print(f"summary          {out / 'summary.json'}  ({summary['seconds']} s)")
    return 0
