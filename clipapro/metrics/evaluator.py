"""Evaluators over a whole dataset: saved PNG predictions, or a live ``predict(image)`` callable.

Both take any dataset that follows the clipapro item contract (``ds[i] = {"image": uint8 (H, W, 3),
"mask": int64 (H, W), "id": str}``, ``ds.num_classes``, ``ds.classes``), load samples in DataLoader
workers, show a tqdm bar and return :class:`~clipapro.metrics.SegMetrics` (``num_images``, ``skipped``
filled in). Under ``torch.distributed`` each rank takes every world-size-th sample and the counts are
summed, so N processes give exactly the single-process numbers.

A sample that cannot be read (missing or corrupt file, size mismatch, label out of range) raises
``ValueError`` naming the file, unless ``skip_corrupt=True``: then it is reported (warning, and the
``skipped`` list) and left out.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .confusion import ConfusionMatrix, all_reduce_sum, confusion_counts
from .report import SegMetrics

__all__ = ["evaluate_pipeline", "evaluate_predictions", "read_prediction_png"]


def read_prediction_png(path) -> np.ndarray:
    """Read a predicted label map PNG (P, L or I mode) as int64 (H, W); errors name the file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read prediction {path}: {err}") from err
    if img.mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"prediction {path} has mode {img.mode!r}: save label maps as P or L PNGs")
    return np.asarray(img, dtype=np.int64)


def _shard(n: int, shard) -> range:
    if shard is None:
        import torch.distributed as dist

        on = dist.is_available() and dist.is_initialized()
        shard = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
    return range(rank, n, world)


def _sample_id(dataset, index: int) -> str:
    samples = getattr(dataset, "samples", None)
    return samples[index].id if samples is not None else f"#{index}"


class _PredictionCounts:
    """Worker-side: ground truth + prediction PNG -> (K, K+1) counts, or an error record."""

    def __init__(self, dataset, indices, pred_dir, num_classes, ignore_index):
        self.dataset, self.indices = dataset, list(indices)
        self.pred_dir, self.k, self.ignore = Path(pred_dir), num_classes, ignore_index

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        i = self.indices[j]
        sid = _sample_id(self.dataset, i)
        try:
            if hasattr(self.dataset, "load_mask") and hasattr(self.dataset, "samples"):
                mask = self.dataset.load_mask(i)  # the image is not needed: skip decoding it
            else:
                item = self.dataset[i]
                mask, sid = item["mask"], item["id"]
            path = self.pred_dir / f"{sid}.png"
            pred = read_prediction_png(path)
            if pred.shape != mask.shape:
                raise ValueError(f"prediction {path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but its "
                                 f"label map is {mask.shape[1]}x{mask.shape[0]}")
            # numpy, not a tensor: a tensor would travel through a shared-memory segment per sample
            counts = confusion_counts(pred, mask, self.k, ignore_index=self.ignore).numpy()
            return {"id": sid, "counts": counts}
        except (ValueError, OSError) as err:
            return {"id": sid, "error": str(err)}


class _Items:
    """Worker-side: dataset item, or an error record."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        i = self.indices[j]
        try:
            return self.dataset[i]
        except (ValueError, OSError) as err:
            return {"id": getattr(err, "sample_id", None) or _sample_id(self.dataset, i), "error": str(err)}


def _first(batch):
    return batch[0]


def _loader(items, num_workers: int):
    return torch.utils.data.DataLoader(items, batch_size=1, shuffle=False, num_workers=num_workers,
                                       collate_fn=_first, prefetch_factor=4 if num_workers > 0 else None)


def _handle_error(record: dict, skip_corrupt: bool, skipped: list) -> None:
    if not skip_corrupt:
        raise ValueError(f"sample {record['id']}: {record['error']} (pass skip_corrupt=True / --skip-corrupt "
                         "to report and skip such samples)")
    warnings.warn(f"skipping sample {record['id']}: {record['error']}", stacklevel=3)
    skipped.append(record["id"])


def _finish(cm: ConfusionMatrix, dataset, num_images: int, skipped: list) -> SegMetrics:
    import torch.distributed as dist

    metrics = cm.compute()
    metrics.num_images = int(all_reduce_sum(torch.tensor([num_images], dtype=torch.int64)).item())
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, skipped)
        skipped = sorted(s for part in gathered for s in part)
    metrics.skipped = list(skipped)
    names = tuple(getattr(dataset, "classes", ()))
    metrics.class_names = names if len(names) == cm.num_classes else None
    return metrics


def _check_dataset(dataset) -> int:
    k = getattr(dataset, "num_classes", None)
    if not isinstance(k, int) or k < 1:
        raise TypeError(f"dataset must have an int num_classes >= 1, got {type(dataset).__name__}")
    return k


def evaluate_predictions(dataset, pred_dir, *, num_workers: int = 0, skip_corrupt: bool = False,
                         ignore_index: int = 255, progress: bool = True, shard=None) -> SegMetrics:
    """Score PNG label maps ``pred_dir/<id>.png`` against ``dataset``'s ground truth.

    Per-image counts are made in the workers, so this scales with ``num_workers``.

    Example:
        >>> from clipapro.data import build_dataset  # doctest: +SKIP
        >>> ds = build_dataset("voc21", "VOCdevkit/VOC2012", split="val")  # doctest: +SKIP
        >>> evaluate_predictions(ds, "preds/", num_workers=4).as_dict()["mIoU"]  # doctest: +SKIP
    """
    k = _check_dataset(dataset)
    if not Path(pred_dir).is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    items = _PredictionCounts(dataset, _shard(len(dataset), shard), pred_dir, k, ignore_index)
    cm, skipped, seen = ConfusionMatrix(k, ignore_index=ignore_index), [], 0
    from tqdm import tqdm

    for rec in tqdm(_loader(items, num_workers), total=len(items), desc="evaluate", disable=not progress):
        if "error" in rec:
            _handle_error(rec, skip_corrupt, skipped)
            continue
        cm.add_counts(torch.from_numpy(rec["counts"]))
        seen += 1
    return _finish(cm, dataset, seen, skipped)


def evaluate_pipeline(predict, dataset, *, num_workers: int = 0, skip_corrupt: bool = False,
                      ignore_index: int = 255, progress: bool = True, shard=None, device=None,
                      save_dir=None) -> SegMetrics:
    """Run ``predict(image) -> label map`` over ``dataset`` and score it.

    Args:
        predict: callable taking one uint8 (H, W, 3) numpy RGB image and returning an integer label
            map (H, W) (numpy or tensor, any device) at the image's resolution.
        num_workers: DataLoader workers that read and decode samples while ``predict`` runs.
        device: where the confusion counts live (default: the device of the first prediction).
        save_dir: also write each prediction as ``save_dir/<id>.png``; a prediction already there is
            read back instead of recomputed, so an interrupted run resumes where it stopped.

    Example:
        >>> ds = build_dataset("voc21", "VOCdevkit/VOC2012")  # doctest: +SKIP
        >>> evaluate_pipeline(lambda img: np.zeros(img.shape[:2], np.int64), ds).miou  # doctest: +SKIP
    """
    if not callable(predict):
        raise TypeError(f"predict must be callable, got {type(predict).__name__}")
    k = _check_dataset(dataset)
    items = _Items(dataset, _shard(len(dataset), shard))
    cm, skipped, seen = ConfusionMatrix(k, ignore_index=ignore_index, device=device), [], 0
    save_dir = None if save_dir is None else Path(save_dir)
    from tqdm import tqdm

    bar = tqdm(_loader(items, num_workers), total=len(items), desc="predict+evaluate", disable=not progress)
    for rec in bar:
        if "error" in rec:
            _handle_error(rec, skip_corrupt, skipped)
            continue
        cached = None if save_dir is None else save_dir / f"{rec['id']}.png"
        if cached is not None and cached.is_file():
            pred = read_prediction_png(cached)
        else:
            pred = predict(rec["image"])
            if cached is not None:
                from clipapro._io import save_label_png

                save_label_png(cached, torch.as_tensor(pred).cpu().numpy())
        if tuple(pred.shape) != rec["mask"].shape:
            raise ValueError(f"predict returned shape {tuple(pred.shape)} for sample {rec['id']}, "
                             f"expected the image's (H, W) = {rec['mask'].shape}")
        target = torch.from_numpy(rec["mask"])
        if isinstance(pred, torch.Tensor) and cm.device is None:
            target = target.to(pred.device)
        cm.update(pred, target)
        seen += 1
    return _finish(cm, dataset, seen, skipped)
