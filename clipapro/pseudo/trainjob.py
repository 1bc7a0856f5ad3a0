"""The training job behind ``clipapro train``: checks first (datasets, pseudo labels, class set,
output folder), then :func:`~clipapro.pseudo.train.train_student` inside a process group."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clipapro.pseudo.distributed import (
    DistInfo,
    cleanup_distributed,
    dist_info,
    init_distributed,
    resolve_device,
)
from clipapro.pseudo.labels import MANIFEST, check_writable_dir, item_ids, missing_labels
from clipapro.pseudo.options import load_dataset, parse_kv
from clipapro.pseudo.student import list_students
from clipapro.pseudo.train import TrainConfig, train_student

__all__ = ["TrainJob", "read_pseudo_manifest"]


def read_pseudo_manifest(pseudo_dir, dataset) -> dict:
    """Load ``pseudo_dir/manifest.json`` and check it matches ``dataset`` (class names, all labels)."""
    path = Path(pseudo_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --pseudo-dir must be a `clipapro pseudo-label` output")
    manifest = json.loads(path.read_text())
    if list(manifest.get("classes", [])) != list(dataset.classes):
        raise ValueError(f"pseudo labels in {pseudo_dir} use classes {manifest.get('classes')} but the "
                         f"dataset has {list(dataset.classes)}")
    missing = missing_labels(pseudo_dir, item_ids(dataset))
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(dataset)} training images have no pseudo label in "
                                f"{pseudo_dir} (first: {missing[:3]}); finish `clipapro pseudo-label` first")
    return manifest


@dataclass
class TrainJob:
    """A checked training configuration, ready to :meth:`run`."""

    config: TrainConfig
    train_set: object
    val_set: object
    pseudo_dir: str | None
    out_dir: Path
    device: object
    info: DistInfo
    resume: bool = True

    @classmethod
    def from_args(cls, args) -> TrainJob:
        for name in ("steps", "batch_size", "ckpt_every", "log_every"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.student not in list_students():
            raise ValueError(f"unknown student {args.student!r}: use one of {list_students()}")
        if args.pseudo_dir is None and not args.clean_labels:
            raise ValueError("give --pseudo-dir (output of `clipapro pseudo-label`) or --clean-labels")
        lo, hi = args.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"--scale-range must satisfy 0 < MIN <= MAX, got {args.scale_range}")
        opts = parse_kv(args.dataset_opt, "--dataset-opt")
        train_set = load_dataset(args.dataset, args.root, args.split, classes=args.classes, options=opts)
        val_set = None
        if args.val_split and args.eval_every:
            val_set = load_dataset(args.dataset, args.root, args.val_split, classes=args.classes,
                                   options=opts)
        pseudo_hash = None
        if args.soft_weight > 0 and args.clean_labels:
            raise ValueError("--soft-weight needs --pseudo-dir with soft labels, not --clean-labels")
        if not args.clean_labels:
            manifest = read_pseudo_manifest(args.pseudo_dir, train_set)
            pseudo_hash = manifest.get("config_hash")
            if args.soft_weight > 0 and not manifest.get("config", {}).get("soft"):
                raise ValueError(f"--soft-weight needs soft labels: {args.pseudo_dir} was made without --soft")
        student_options = parse_kv(args.student_opt, "--student-opt")
        if args.student == "clip_vit" and "classes" not in student_options:  # text-initialised classifier
            cs = train_set.class_set
            student_options["classes"] = [[n, list(p)] for n, p in zip(cs.names, cs.prompts, strict=True)]
        out_dir = check_writable_dir(args.out)
        info = dist_info()
        device = resolve_device(args.device, info)
        config = TrainConfig(
            num_classes=train_set.num_classes, student=args.student, backbone_weights=args.backbone_weights,
            student_options=student_options,
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            crop_size=tuple(args.crop_size), scale_range=(lo, hi), flip=not args.no_flip,
            apro_weight=args.apro_weight, soft_weight=args.soft_weight,
            apro_options=parse_kv(args.apro_opt, "--apro-opt"),
            amp=not args.no_amp, seed=args.seed, pseudo_hash=pseudo_hash, stop_at=args.stop_at,
            eval_every=args.eval_every, ckpt_every=args.ckpt_every, log_every=args.log_every,
            workers=args.workers, eval_limit=args.eval_limit, progress=not args.no_progress)
        if config.apro_weight > 0:  # bad --apro-opt values fail now, on a 4x4 toy input
            import torch

            import clipapro

            try:
                clipapro.apro(torch.full((1, 2, 4, 4), 0.5), torch.rand(1, 3, 4, 4), **config.apro_options)
            except TypeError as err:
                raise ValueError(f"--apro-opt: {err}") from err
        return cls(config, train_set, val_set, None if args.clean_labels else args.pseudo_dir, out_dir,
                   device, info, resume=not args.no_resume)

    def run(self) -> dict:
        self.info = init_distributed(self.device)
        try:
            return train_student(self.config, self.train_set, pseudo_dir=self.pseudo_dir,
                                 out_dir=self.out_dir, val_dataset=self.val_set, device=self.device,
                                 resume=self.resume)
        finally:
            cleanup_distributed()
