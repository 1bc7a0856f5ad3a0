"""The pseudo-labelling job behind ``clipapro pseudo-label``: checks first, then work.

:meth:`PseudoLabelJob.from_args` resolves and checks everything that can be wrong in a configuration
(unknown dataset or refiner, class set that does not match the dataset, unwritable or foreign output
folder) before a model is built; :meth:`PseudoLabelJob.run` builds CLIP, labels this rank's shard,
waits for all ranks and marks the folder complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import clipapro
from clipapro.pseudo import labels as L
from clipapro.pseudo.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    dist_info,
    init_distributed,
    resolve_device,
)
from clipapro.pseudo.options import check_class_set, load_dataset, parse_kv
from clipapro.pseudo.refiners import get_refiner

__all__ = ["PseudoLabelJob", "clip_predictor"]


def clip_predictor(*, model: str, pretrained, backend: str, precision: str, device, class_set,
                   templates, text_cache=None, model_options=None, predict_options=None):
    """``fn(image (1, 3, H, W) in [0, 1]) -> (1, K, h, w)`` class probabilities from a CLIP model
    (:mod:`clipapro.clip`: ``create_model``, ``build_text_classifier``, ``predict_probs``)."""
    from clipapro.clip import build_text_classifier, create_model, predict_probs

    torch.manual_seed(0)  # randomly initialised models (tests, benchmarks) are then equal in every process
    net = create_model(model, pretrained=pretrained, backend=backend, device=str(device), precision=precision,
                       **(model_options or {}))
    classifier = build_text_classifier(net, class_set, templates=templates, cache_dir=text_cache)
    opts = dict(predict_options or {})

    def predict(image: torch.Tensor) -> torch.Tensor:
        return predict_probs(net, image.to(device), classifier, **opts)

    return predict


@dataclass
class PseudoLabelJob:
    """A checked pseudo-labelling configuration, ready to :meth:`run`."""

    dataset: object
    class_set: object
    config: dict
    out_dir: Path
    refine_name: str
    refine_options: dict
    model_options: dict
    predict_options: dict
    threshold: float | None
    soft: bool
    limit: int | None
    device: torch.device
    info: DistInfo
    progress: bool = True
    text_cache: str | None = None
    overwrite: bool = False
    refine_workers: int = 0

    @classmethod
    def from_args(cls, args) -> PseudoLabelJob:
        if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
            raise ValueError(f"--threshold must lie in (0, 1], got {args.threshold}")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        if args.refine_workers < 0:
            raise ValueError(f"--refine-workers must be >= 0, got {args.refine_workers}")
        refine_options = parse_kv(args.refine_opt, "--refine-opt")
        protocol = getattr(args, "protocol", None)
        proto = None
        if protocol is not None:
            from clipapro.protocols import get_protocol

            proto = get_protocol(protocol)
        refine_name = args.refine or ("none" if proto is not None else "auto")
        get_refiner(refine_name, **refine_options)  # unknown refiner fails now
        classes = args.classes or (proto.classes if proto is not None else None)
        templates = args.templates or (proto.templates if proto is not None else "imagenet80")
        dataset = load_dataset(args.dataset, args.root, args.split, classes=classes,
                               options=parse_kv(args.dataset_opt, "--dataset-opt"))
        class_set = check_class_set(classes, dataset)
        if len(class_set) > 255:
            raise ValueError(f"{len(class_set)} classes do not fit a uint8 label PNG (255 is ignore)")
        out_dir = L.check_writable_dir(args.out_dir)
        info = dist_info()
        device = resolve_device(args.device, info)
        model_options = parse_kv(args.model_opt, "--model-opt")
        predict_options = parse_kv(args.clip_opt, "--clip-opt")
        if proto is not None:
            predict_options = {"protocol": proto.name, **predict_options}
            if args.refine is not None:
                predict_options.setdefault("cosine_refiner", False)  # a named refiner replaces the preset's
        config = {
            "dataset": args.dataset, "root": str(Path(args.root).resolve()) if args.root else None,
            "split": args.split, "num_images": len(dataset),
            "classes": [list(p) for p in class_set.prompts], "class_names": list(class_set.names),
            "model": args.model, "pretrained": args.pretrained, "backend": args.backend,
            "precision": args.precision, "templates": templates, "model_options": model_options,
            "predict_options": predict_options, "refine": refine_name, "refine_options": refine_options,
            "threshold": args.threshold, "soft": bool(args.soft), "clipapro": clipapro.__version__,
        }
        job = cls(dataset, class_set, config, out_dir, refine_name, refine_options, model_options,
                  predict_options, args.threshold, bool(args.soft), args.limit, device, info,
                  progress=not args.no_progress, text_cache=args.text_cache, overwrite=bool(args.overwrite),
                  refine_workers=args.refine_workers)
        # a foreign manifest is refused here, before any model is built (all ranks check)
        L.prepare_manifest(out_dir, config, class_names=class_set.names, overwrite=job.overwrite, write=False)
        return job

    def run(self) -> dict:
        info = init_distributed(self.device)
        try:
            if info.is_main:
                L.remove_stale_temp_files(self.out_dir)  # left by a killed run; nobody writes yet
                manifest = L.prepare_manifest(self.out_dir, self.config, class_names=self.class_set.names,
                                              overwrite=self.overwrite)
            barrier()  # the manifest (and a cleared folder on --overwrite) exists before anyone writes
            c = self.config
            predict = clip_predictor(model=c["model"], pretrained=c["pretrained"], backend=c["backend"],
                                     precision=c["precision"], device=self.device, class_set=self.class_set,
                                     templates=c["templates"], text_cache=self.text_cache,
                                     model_options=self.model_options, predict_options=self.predict_options)
            refine = get_refiner(self.refine_name, **self.refine_options)
            stats = L.generate_pseudo_labels(self.dataset, predict, refine, self.out_dir,
                                             threshold=self.threshold, soft=self.soft, rank=info.rank,
                                             world_size=info.world_size, progress=self.progress,
                                             limit=self.limit, refine_workers=self.refine_workers)
            barrier()
            ids = L.item_ids(self.dataset)
            missing = L.missing_labels(self.out_dir, ids, soft=self.soft)
            stats.update(total=len(ids), missing=len(missing), complete=not missing)
            if info.is_main and not missing:
                L.mark_complete(self.out_dir, manifest, len(ids))
            barrier()
            return stats
        finally:
            cleanup_distributed()
