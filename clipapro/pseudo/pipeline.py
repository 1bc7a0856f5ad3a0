"""The pseudo-labelling job behind ``clipapro pseudo-label``: checks first, then work.

:meth:`PseudoLabelJob.create` takes typed keyword arguments (its signature holds the defaults the
command line shows), resolves and checks everything that can be wrong in a configuration (unknown
dataset or refiner, class set that does not match the dataset, unwritable or foreign output folder)
before a model is built; :meth:`PseudoLabelJob.run` builds CLIP, labels this rank's shard, waits for
all ranks and marks the folder complete.

Example:
    >>> job = PseudoLabelJob.create(dataset="voc21", root="VOCdevkit/VOC2012", split="train",
    ...                             out_dir="runs/pl", refine="apro")  # doctest: +SKIP
    >>> job.run()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import clipapro
from clipapro.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    dist_info,
    init_distributed,
    resolve_device,
)
from clipapro.io import MAX_PNG_CLASSES
from clipapro.pseudo import labels as L
from clipapro.pseudo.options import check_class_set, load_dataset
from clipapro.refiners import make_refiner

__all__ = ["PseudoLabelJob", "clip_predictor"]


def clip_predictor(*, model: str, pretrained, backend: str, precision: str, device, class_set,
                   templates, cache_dir=None, model_options=None, predict_options=None, progress: bool = True):
    """``fn(image (1, 3, H, W) in [0, 1]) -> (1, K, h, w)`` class probabilities from a CLIP model
    (:mod:`clipapro.clip`: ``create_model``, ``build_text_classifier``, ``predict_probs``)."""
    from clipapro.clip import build_text_classifier, create_model, predict_probs

    torch.manual_seed(0)  # randomly initialised models (tests, benchmarks) are then equal in every process
    net = create_model(model, pretrained=pretrained, backend=backend, device=str(device), precision=precision,
                       **(model_options or {}))
    classifier = build_text_classifier(net, class_set, templates=templates, cache_dir=cache_dir, progress=progress)
    opts = dict(predict_options or {})
    if isinstance(opts.get("protocol"), str):  # the manifest records the preset by name
        from clipapro.protocols import get_protocol

        opts["protocol"] = get_protocol(opts["protocol"])

    def predict(image: torch.Tensor) -> torch.Tensor:
        return predict_probs(net, image.to(device), classifier, **opts)

    return predict


def _check_range(value, name: str, lo, hi, *, lo_open: bool = False):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
        raise ValueError(f"{name} must lie in {bounds}, got {value}")
    return value


@dataclass
class PseudoLabelJob:
    """A checked pseudo-labelling configuration, ready to :meth:`run` (build it with :meth:`create`)."""

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
    cache_dir: str | None = None
    overwrite: bool = False
    refine_workers: int = 0

    @classmethod
    def create(cls, *, dataset: str, out_dir, root=None, split: str | None = None, classes=None,
               dataset_options: dict | None = None, limit: int | None = None, model: str = "ViT-B-16",
               pretrained: str | None = None, backend: str = "open_clip", precision: str = "fp32",
               templates: str | None = None, cache_dir=None, model_options: dict | None = None,
               predict_options: dict | None = None, device: str = "auto", refine: str | None = None,
               refine_options: dict | None = None, refine_workers: int = 0, threshold: float | None = None,
               soft: bool = False, overwrite: bool = False, progress: bool = True,
               protocol: str | None = None) -> PseudoLabelJob:
        """Check a configuration and return the job; raises ValueError / FileNotFoundError /
        PermissionError naming the bad argument before any model is built.

        ``dataset``: catalog name (voc21, context60, cocostuff171, folder, hf:...); ``split``: default
        ``train`` (folder datasets: all images); ``classes``: class set of the text classifier
        (default: the protocol's, else the dataset's); ``templates``: default the protocol's, else
        ``imagenet80``; ``limit``: label only the first N images; ``refine``: a
        :func:`clipapro.refiners.list_refiners` name or ``"auto"`` (default: ``"auto"``; with a
        ``protocol`` the preset's own refinement, which a named refiner replaces); ``threshold``: pixels whose top
        refined probability is below it become 255; ``soft``: also write float16 soft labels;
        ``refine_workers``: threads refining while CLIP predicts the next images (0: inline);
        ``protocol``: a published preset (:mod:`clipapro.protocols`, e.g. ``"naclip-voc21"``).
        """
        _check_range(threshold, "threshold", 0.0, 1.0, lo_open=True)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        if isinstance(refine_workers, bool) or not isinstance(refine_workers, int) or refine_workers < 0:
            raise ValueError(f"refine_workers must be an int >= 0, got {refine_workers!r}")
        refine_options = dict(refine_options or {})
        proto = None
        if protocol is not None:
            from clipapro.protocols import get_protocol

            proto = get_protocol(protocol)
        named_refiner = refine is not None
        refine = refine if named_refiner else ("none" if proto is not None else "auto")
        make_refiner(refine, **refine_options)  # unknown refiner or option fails now
        classes = classes if classes is not None else (proto.classes if proto is not None else None)
        templates = templates if templates is not None else (proto.templates if proto is not None else "imagenet80")
        ds = load_dataset(dataset, root, split, classes=classes, options=dataset_options)
        class_set = check_class_set(classes, ds)
        if len(class_set) > MAX_PNG_CLASSES:
            raise ValueError(f"{len(class_set)} classes do not fit a uint8 label PNG (at most {MAX_PNG_CLASSES}; "
                             "255 marks ignored pixels)")
        out = L.check_writable_dir(out_dir)
        info = dist_info()
        dev = resolve_device(device, info)
        model_options, predict_options = dict(model_options or {}), dict(predict_options or {})
        if proto is not None:
            predict_options = {"protocol": proto.name, **predict_options}
            if named_refiner:
                predict_options.setdefault("cosine_refiner", False)  # a named refiner replaces the preset's
        config = {
            "dataset": dataset, "root": str(Path(root).resolve()) if root else None,
            "split": split, "num_images": len(ds),
            "classes": [list(p) for p in class_set.prompts], "class_names": list(class_set.names),
            "model": model, "pretrained": pretrained, "backend": backend,
            "precision": precision, "templates": templates, "model_options": model_options,
            "predict_options": predict_options, "refine": refine, "refine_options": refine_options,
            "threshold": threshold, "soft": bool(soft), "clipapro": clipapro.__version__,
        }
        job = cls(ds, class_set, config, out, refine, refine_options, model_options, predict_options, threshold,
                  bool(soft), limit, dev, info, progress=bool(progress), cache_dir=cache_dir,
                  overwrite=bool(overwrite), refine_workers=refine_workers)
        # a foreign manifest is refused here, before any model is built (all ranks check)
        L.prepare_manifest(out, config, class_names=class_set.names, overwrite=job.overwrite, write=False)
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
                                     templates=c["templates"], cache_dir=self.cache_dir,
                                     model_options=self.model_options, predict_options=self.predict_options,
                                     progress=self.progress and info.is_main)
            refine = make_refiner(self.refine_name, **self.refine_options)
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
