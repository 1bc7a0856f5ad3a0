"""Training data for self-training: dataset images paired with pseudo-label PNGs, and the batch plan.

The batch plan of an epoch is a pure function of (seed, epoch, rank, world size): a seeded
permutation cut into global batches of ``batch_size * world_size``, rank r taking its slice of each.
Resuming at step s therefore just skips the first ``s mod steps_per_epoch`` batches of epoch
``s // steps_per_epoch``; no sampler state has to be saved.
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipapro.data.base import read_label_png
from clipapro.pseudo.augment import random_scale_crop_flip, sample_seed
from clipapro.pseudo.labels import item_ids, label_path, load_image, load_soft_labels, missing_labels, soft_path

__all__ = ["PseudoLabelDataset", "epoch_batches", "steps_per_epoch"]


class PseudoLabelDataset(torch.utils.data.Dataset):
    """Images of ``dataset`` with labels from ``pseudo_dir/labels/<id>.png``, augmented per sample.

    Indexed by ``(index, epoch)`` pairs (what the batch plan yields), so the augmentation seed is
    :func:`~clipapro.pseudo.augment.sample_seed` (seed, epoch, index). Items are
    ``(image (3, h, w) float in [0, 1], label (h, w) int64)``; padding is black with label 255.
    With ``soft=True`` items also carry the stored soft labels ``(K, h, w)`` (zero on padding).

    ``pseudo_dir=None`` trains on the dataset's own masks (clean labels, for tests and upper bounds);
    ``sparse`` (a :class:`~clipapro.pseudo.sparse.SparseLabels`, with ``pseudo_dir=None``) reads
    scribbles or points instead, already checked by :meth:`SparseLabels.check`; their labelled
    pixels survive downscaling (see ``sparse`` of :func:`random_scale_crop_flip`).
    """

    def __init__(self, dataset, pseudo_dir, *, crop_size=(512, 512), scale_range=(0.5, 2.0),
                 flip: bool = True, seed: int = 0, soft: bool = False, sparse=None):
        self.dataset = dataset
        self.pseudo_dir = None if pseudo_dir is None else Path(pseudo_dir)
        self.ids = item_ids(dataset)
        self.crop_size = tuple(crop_size)
        self.scale_range = tuple(scale_range)
        self.flip = flip
        self.seed = seed
        self.soft = bool(soft)
        self.sparse = sparse
        if sparse is not None and (pseudo_dir is not None or self.soft):
            raise ValueError("sparse labels replace pseudo labels: give sparse or pseudo_dir, not both")
        if self.soft and self.pseudo_dir is None:
            raise ValueError("soft labels need a pseudo-label folder")
        if self.pseudo_dir is not None:
            missing = missing_labels(self.pseudo_dir, self.ids, soft=self.soft)
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} of {len(self.ids)} images have no pseudo label in "
                    f"{self.pseudo_dir}/labels (first: {missing[:3]}); finish `clipapro pseudo-label`")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key):
        index, epoch = key
        if self.sparse is not None:
            image = load_image(self.dataset, index)
            label = self.sparse.read(self.ids[index], image.shape[:2])
        elif self.pseudo_dir is None:
            item = self.dataset[index]
            image, label = item["image"], item["mask"]
        else:
            image = load_image(self.dataset, index)
            label = read_label_png(label_path(self.pseudo_dir, self.ids[index]))
            if label.shape != image.shape[:2]:
                raise ValueError(f"pseudo label of {self.ids[index]!r} is {label.shape}, "
                                 f"its image {image.shape[:2]}")
        soft = load_soft_labels(soft_path(self.pseudo_dir, self.ids[index])) if self.soft else None
        return random_scale_crop_flip(image, label, crop_size=self.crop_size, scale_range=self.scale_range,
                                      flip=self.flip, seed=sample_seed(self.seed, epoch, index), soft=soft,
                                      sparse=self.sparse is not None)


def steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped)."""
    per = n // (batch_size * world_size)
    if per < 1:
        raise ValueError(f"{n} training images cannot fill one global batch of {batch_size} images "
                         f"x {world_size} ranks")
    return per


def epoch_batches(n: int, *, epoch: int, seed: int, batch_size: int, rank: int = 0,
                  world_size: int = 1) -> list[list[tuple[int, int]]]:
    """This rank's batches of ``epoch``: lists of ``(index, epoch)`` keys.

    Example:
        >>> b = epoch_batches(10, epoch=0, seed=0, batch_size=2, rank=1, world_size=2)
        >>> len(b), len(b[0])
        (2, 2)
    """
    gen = torch.Generator().manual_seed(sample_seed(seed, epoch, 2**32))
    perm = torch.randperm(n, generator=gen).tolist()
    size = batch_size * world_size
    out = []
    for b in range(steps_per_epoch(n, batch_size, world_size)):
        chunk = perm[b * size + rank * batch_size: b * size + (rank + 1) * batch_size]
        out.append([(i, epoch) for i in chunk])
    return out
