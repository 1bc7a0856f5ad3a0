"""The training job behind ``clipapro train``: checks first (datasets, pseudo or sparse labels, class
set, output folder), then :func:`~clipapro.pseudo.train.train_student` inside a process group."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clipapro.distributed import (
    DistInfo,
    cleanup_distributed,
    dist_info,
    init_distributed,
    resolve_device,
)
from clipapro.pseudo.labels import MANIFEST, check_writable_dir, item_ids, missing_labels
from clipapro.pseudo.options import load_dataset
from clipapro.pseudo.train import TrainConfig, train_student

__all__ = ["TrainJob", "read_pseudo_manifest"]


def read_pseudo_manifest(pseudo_dir, dataset) -> dict:
    """Load ``pseudo_dir/manifest.json`` and check it matches ``dataset`` (class names, all labels)."""
    path = Path(pseudo_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pseudo_dir must be a `clipapro pseudo-label` output folder")
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
    def create(cls, *, dataset: str, out_dir, root=None, split: str | None = None, classes=None,
               dataset_options: dict | None = None, pseudo_dir=None, clean_labels: bool = False,
               val_split: str | None = None, eval_every: int = 2000, eval_limit: int | None = None,
               student: str = "deeplabv3_resnet101", backbone_weights: str | None = None,
               student_options: dict | None = None, steps: int = 20000, batch_size: int = 8, lr: float = 0.01,
               weight_decay: float = 5e-4, crop_size=(512, 512), scale_range=(0.5, 2.0), flip: bool = True,
               apro_weight: float = 0.0, apro_options: dict | None = None, soft_weight: float = 0.0,
               amp: bool = True, seed: int = 0, ckpt_every: int = 1000, log_every: int = 50,
               stop_at: int | None = None, resume: bool = True, workers: int = 4, device: str = "auto",
               progress: bool = True, scribbles=None, points=None, point_radius: int = 0,
               apro_ramp: int = 0) -> TrainJob:
        """Check a training configuration and return the job; raises ValueError / FileNotFoundError /
        PermissionError naming the bad argument before any work.

        ``pseudo_dir``: output of ``clipapro pseudo-label`` (required unless ``clean_labels``, which
        trains on the dataset's own masks: the fully supervised upper bound); ``val_split``: split
        with ground truth evaluated every ``eval_every`` steps (0: never); ``apro_weight``: weight of
        the online APro soft-label loss on the student's own predictions; ``soft_weight``: weight of
        the cross-entropy with stored soft labels (``pseudo-label --soft``).

        Sparse labels instead of pseudo labels: ``scribbles`` (folder of ``<id>.png``, 255 =
        unlabelled) or ``points`` (folder of ``<id>.json`` or one ``{id: points}`` JSON file; each point
        a disk of ``point_radius`` pixels), see :mod:`clipapro.pseudo.sparse`. The loss is then partial
        cross-entropy + APro soft-label loss (APro paper, Table 2 setting): ``apro_weight`` weighs
        :class:`~clipapro.adapters.points.AProSoftLabelLoss` and ``apro_options`` are its options.
        Every label file is read and checked here (missing, wrong size, class >= K: one error naming
        the file). ``apro_ramp``: steps over which the APro weight rises linearly from 0.
        """
        from clipapro.pseudo.student import check_student

        for name, value in (("steps", steps), ("batch_size", batch_size), ("ckpt_every", ckpt_every),
                            ("log_every", log_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        check_student(student)
        given = [n for n, v in (("pseudo_dir", pseudo_dir), ("scribbles", scribbles), ("points", points),
                                ("clean_labels", clean_labels)) if v]
        if len(given) > 1 and ("scribbles" in given or "points" in given):
            raise ValueError(f"{' and '.join(given)} are exclusive: train on one kind of labels")
        if not given:
            raise ValueError("give pseudo_dir (output of `clipapro pseudo-label`), scribbles or points, "
                             "or set clean_labels")
        if isinstance(apro_ramp, bool) or not isinstance(apro_ramp, int) or apro_ramp < 0:
            raise ValueError(f"apro_ramp must be an int >= 0, got {apro_ramp!r}")
        if point_radius and points is None:
            raise ValueError("point_radius applies to points only")
        sparse = None
        if scribbles is not None or points is not None:
            from clipapro.pseudo.sparse import SparseLabels

            if soft_weight > 0:
                raise ValueError("soft_weight needs pseudo_dir with soft labels, not sparse labels")
            sparse = (SparseLabels("scribbles", str(scribbles)) if scribbles is not None
                      else SparseLabels("points", str(points), point_radius))
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < MIN <= MAX, got {tuple(scale_range)}")
        train_set = load_dataset(dataset, root, split, classes=classes, options=dataset_options)
        val_set = None
        if val_split and eval_every:
            val_set = load_dataset(dataset, root, val_split, classes=classes, options=dataset_options)
        pseudo_hash = None
        if soft_weight > 0 and clean_labels:
            raise ValueError("soft_weight needs pseudo_dir with soft labels, not clean_labels")
        sparse_config = None
        if sparse is not None:
            sparse_config = sparse.as_config(sparse.check(train_set, train_set.num_classes))
        elif not clean_labels:
            manifest = read_pseudo_manifest(pseudo_dir, train_set)
            pseudo_hash = manifest.get("config_hash")
            if soft_weight > 0 and not manifest.get("config", {}).get("soft"):
                raise ValueError(f"soft_weight needs soft labels: {pseudo_dir} was made without --soft")
        student_options = dict(student_options or {})
        if student == "clip_vit" and "classes" not in student_options:  # text-initialised classifier
            cs = train_set.class_set
            student_options["classes"] = [[n, list(p)] for n, p in zip(cs.names, cs.prompts, strict=True)]
        out = check_writable_dir(out_dir)
        info = dist_info()
        dev = resolve_device(device, info)
        config = TrainConfig(
            num_classes=train_set.num_classes, student=student, backbone_weights=backbone_weights,
            student_options=student_options, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            crop_size=tuple(crop_size), scale_range=(lo, hi), flip=bool(flip), apro_weight=apro_weight,
            soft_weight=soft_weight, apro_options=dict(apro_options or {}), amp=bool(amp), seed=seed,
            pseudo_hash=pseudo_hash, stop_at=stop_at, eval_every=eval_every, ckpt_every=ckpt_every,
            log_every=log_every, workers=workers, eval_limit=eval_limit, progress=bool(progress),
            sparse=sparse_config, apro_ramp=apro_ramp)
        if config.apro_weight > 0 and sparse is not None:  # bad options fail now
            from clipapro.adapters.points import AProSoftLabelLoss

            try:
                AProSoftLabelLoss(**config.apro_options)
            except TypeError as err:
                raise ValueError(f"apro_options: {err}") from err
        elif config.apro_weight > 0:  # bad apro_options fail now, on a 4x4 toy input
            import torch

            import clipapro

            try:
                clipapro.apro(torch.full((1, 2, 4, 4), 0.5), torch.rand(1, 3, 4, 4), **config.apro_options)
            except TypeError as err:
                raise ValueError(f"apro_options: {err}") from err
        return cls(config, train_set, val_set, None if clean_labels else pseudo_dir, out, dev, info,
                   resume=bool(resume))

    def run(self) -> dict:
        self.info = init_distributed(self.device)
        try:
            return train_student(self.config, self.train_set, pseudo_dir=self.pseudo_dir,
                                 out_dir=self.out_dir, val_dataset=self.val_set, device=self.device,
                                 resume=self.resume)
        finally:
            cleanup_distributed()
