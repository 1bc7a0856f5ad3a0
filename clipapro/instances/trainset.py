"""Training samples for a detector from an instance dataset: boxes and labels only, never masks.

``BoxTrainSet(dataset)[(index, epoch)] -> (image (3, H, W), {"boxes" (N, 4), "labels" (N,)})`` with
the dataset's category ids mapped to model labels 1..K (in ``dataset.categories`` order) and a
random horizontal flip drawn from ``sample_seed(seed, epoch, index)``, so a resumed run sees the
same images flipped the same way without any saved data state.
"""

from __future__ import annotations

import torch

from clipapro.pseudo.augment import sample_seed

__all__ = ["BoxTrainSet", "collate_detection"]


class BoxTrainSet(torch.utils.data.Dataset):
    """Wrap an instance dataset (``ds[i]`` with ``image``, ``boxes``, ``labels``) for detection training.

    Images without any box are kept (torchvision trains them as all-background).
    """

    def __init__(self, dataset, *, flip: bool = True, seed: int = 0):
        self.dataset, self.flip, self.seed = dataset, bool(flip), int(seed)
        self.category_ids = [int(c["id"]) for c in dataset.categories]
        self._label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        s = self.dataset[index]
        image, boxes = s.image, s.boxes.to(torch.float32).reshape(-1, 4).clone()
        try:
            labels = torch.tensor([self._label_of[int(c)] for c in s.labels.tolist()], dtype=torch.int64)
        except KeyError as err:
            raise ValueError(f"image {s.file_name}: category id {err.args[0]} is not in the dataset's categories "
                             f"{self.category_ids}") from None
        gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        if self.flip and bool(torch.rand((), generator=gen) < 0.5):
            w = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return image.contiguous(), {"boxes": boxes, "labels": labels}


def collate_detection(batch):
    """``[(image, target), ...]`` -> ``([images], [targets])`` (torchvision detection's list inputs)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
