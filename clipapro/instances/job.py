"""The job behind ``clipapro train-instances``: every check first (datasets, model, weights file,
output folder), then :func:`~clipapro.instances.train.train_instances` inside a process group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clipapro.distributed import DistInfo, cleanup_distributed, dist_info, init_distributed, resolve_device
from clipapro.instances.train import InstanceTrainConfig, train_instances

__all__ = ["InstanceTrainJob", "load_instance_dataset"]


def load_instance_dataset(*, annotations=None, images=None, voc_root=None, split=None, with_masks: bool = True):
    """A COCO JSON + image folder, or a VOC root + split (exactly one of ``annotations`` / ``voc_root``)."""
    from clipapro.data.instances import CocoInstances
    from clipapro.data.voc_instances import VocInstances

    if (annotations is None) == (voc_root is None):
        raise ValueError("give either annotations (a COCO JSON, with images) or voc_root (with split)")
    if annotations is not None:
        if not Path(annotations).is_file():
            raise FileNotFoundError(f"annotations file not found: {annotations}")
        if images is None:
            raise ValueError(f"images: the image folder of {annotations} is required")
        return CocoInstances(annotations, images, with_masks=with_masks)
    return VocInstances(voc_root, split or "train", with_masks=with_masks)


@dataclass
class InstanceTrainJob:
    """A checked configuration, ready to :meth:`run`."""

    config: InstanceTrainConfig
    train_set: object
    val_set: object
    out_dir: Path
    device: object
    info: DistInfo
    resume: bool = True

    @classmethod
    def create(cls, *, out_dir, annotations=None, images=None, voc_root=None, split: str = "train",
               val_annotations=None, val_images=None, val_split: str | None = None,
               model: str = "maskrcnn_resnet50_fpn", backbone_weights=None, model_options: dict | None = None,
               mask_loss_options: dict | None = None, min_size: int = 800, max_size: int = 1333,
               steps: int = 90000, batch_size: int = 2, lr: float = 0.02, weight_decay: float = 1e-4,
               warmup_steps: int = 1000, flip: bool = True, amp: bool = True, seed: int = 0, eval_every: int = 5000,
               eval_limit: int | None = None, ckpt_every: int = 1000, log_every: int = 20, stop_at: int | None = None,
               resume: bool = True, workers: int = 2, device: str = "auto", progress: bool = True) -> InstanceTrainJob:
        """Check everything and return the job; raises ValueError / FileNotFoundError / PermissionError
        naming the bad argument before any work.

        Training data: ``annotations`` (COCO JSON) + ``images``, or ``voc_root`` + ``split``; its masks
        are never read. Validation (mask AP every ``eval_every`` steps and at the end; final
        predictions written): ``val_annotations`` (+ ``val_images``, default ``images``) or, with
        ``voc_root``, ``val_split``.
        """
        import torch

        from clipapro.instances.models import check_instance_model, create_instance_model
        from clipapro.pseudo.labels import check_writable_dir

        for name, value in (("steps", steps), ("batch_size", batch_size), ("ckpt_every", ckpt_every),
                            ("log_every", log_every), ("min_size", min_size), ("max_size", max_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name, value in (("warmup_steps", warmup_steps), ("eval_every", eval_every), ("workers", workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not (lr > 0 and weight_decay >= 0):
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got {lr!r}, {weight_decay!r}")
        check_instance_model(model)
        if backbone_weights is not None and not Path(backbone_weights).is_file():
            raise FileNotFoundError(f"backbone_weights file not found: {backbone_weights}")
        train_set = load_instance_dataset(annotations=annotations, images=images, voc_root=voc_root, split=split,
                                          with_masks=False)
        if len(train_set) == 0:
            raise ValueError("the training set has no images")
        val_set = None
        if val_annotations is not None:
            val_set = load_instance_dataset(annotations=val_annotations, images=val_images or images)
        elif val_split is not None:
            if voc_root is None:
                raise ValueError("val_split needs voc_root (for a COCO JSON give val_annotations)")
            val_set = load_instance_dataset(voc_root=voc_root, split=val_split)
        if val_set is not None and [c["id"] for c in val_set.categories] != [c["id"] for c in train_set.categories]:
            raise ValueError(f"val categories {val_set.categories} differ from the training set's "
                             f"{train_set.categories}")
        config = InstanceTrainConfig(
            num_classes=len(train_set.categories), category_ids=[int(c["id"]) for c in train_set.categories],
            model=model, backbone_weights=None if backbone_weights is None else str(backbone_weights),
            model_options=dict(model_options or {}), mask_loss_options=dict(mask_loss_options or {}),
            min_size=min_size, max_size=max_size, steps=steps, batch_size=batch_size, lr=float(lr),
            weight_decay=float(weight_decay), warmup_steps=warmup_steps, flip=bool(flip), amp=bool(amp), seed=seed,
            stop_at=stop_at, eval_every=eval_every, ckpt_every=ckpt_every, log_every=log_every, workers=workers,
            eval_limit=eval_limit, progress=bool(progress))
        with torch.random.fork_rng():  # bad model/loss options and weight files fail now, not after the data
            try:
                create_instance_model(model, config.num_classes, backbone_weights=backbone_weights, min_size=min_size,
                                      max_size=max_size, mask_loss_options=config.mask_loss_options,
                                      **config.model_options)
            except TypeError as err:
                raise ValueError(f"model_options / mask_loss_options: {err}") from None
        out = check_writable_dir(out_dir)
        info = dist_info()
        return cls(config, train_set, val_set, out, resolve_device(device, info), info, resume=bool(resume))

    def run(self) -> dict:
        self.info = init_distributed(self.device)
        try:
            return train_instances(self.config, self.train_set, out_dir=self.out_dir, val_dataset=self.val_set,
                                   device=self.device, resume=self.resume)
        finally:
            cleanup_distributed()
