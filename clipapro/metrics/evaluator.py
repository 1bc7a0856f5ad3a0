"""One evaluation loop for every kind of prediction: saved PNGs, a live pipeline, a student network.

The split follows detectron2's ``inference_on_dataset`` + ``DatasetEvaluator``:

* :class:`SemSegEvaluator` accumulates a confusion matrix: ``reset() / process(item, pred) / evaluate()``;
* :func:`inference_on_dataset` is the loop: samples of this rank's shard are read in DataLoader
  workers, ``predict(item)`` turns each into an integer label map, the evaluator scores it; under
  ``torch.distributed`` the counts are summed, so N processes give the single-process numbers.

Items follow the clipapro contract (``{"image": uint8 (H, W, 3), "mask": int64 (H, W), "id": str}``;
datasets have ``num_classes`` and ``classes``). :func:`evaluate_predictions` (PNG files) and
:func:`evaluate_pipeline` (``predict(image) -> labels``) are the two front doors built on the loop.

A sample that cannot be read (missing or corrupt file, size mismatch, label out of range) raises
``ValueError`` naming the file, unless ``skip_corrupt=True``: then it is reported (warning, and the
``skipped`` list) and left out; when every sample was skipped the evaluation fails rather than report
empty metrics. Predicted labels outside ``0..K-1`` on labelled pixels count as misses, with one warning
giving their number.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from clipapro.distributed import all_reduce_sum, this_shard
from clipapro.io import IGNORE_INDEX, UnreadableFileError, read_label_png, save_label_png

from .confusion import ConfusionMatrix
from .report import SegMetrics

__all__ = ["SemSegEvaluator", "evaluate_pipeline", "evaluate_predictions", "inference_on_dataset",
           "read_prediction_png"]


def read_prediction_png(path) -> np.ndarray:
    """Read a predicted label map PNG as int64 (H, W) (:func:`clipapro.io.read_label_png`)."""
    return read_label_png(path, what="prediction")


class SemSegEvaluator:
    """Streaming semantic-segmentation scores over a dataset.

    Args:
        num_classes: K. ignore_index: ground-truth value that never counts.
        class_names: K names for the reports. device: where the counts live (default: the first
            prediction's device). skip_corrupt: report unreadable samples instead of raising.

    Example:
        >>> ev = SemSegEvaluator(2)
        >>> ev.process({"id": "a", "mask": np.array([[0, 1]])}, np.array([[0, 0]]))
        >>> round(ev.evaluate().miou, 2)
        0.25
    """

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX, class_names=None, device=None,
                 skip_corrupt: bool = False):
        self.num_classes = num_classes
        self.cm = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device, class_names=class_names)
        self.skip_corrupt = bool(skip_corrupt)
        self.reset()

    def reset(self) -> None:
        self.cm.reset()
        self.num_images, self.skipped, self.out_of_range = 0, [], 0

    def process(self, item: dict, pred) -> None:
        """Score one prediction (H, W) (numpy or tensor) against ``item["mask"]``."""
        mask = item["mask"]
        if tuple(pred.shape) != tuple(mask.shape):
            raise ValueError(f"prediction for sample {item.get('id')} has shape {tuple(pred.shape)}, expected the "
                             f"image's (H, W) = {tuple(mask.shape)}")
        target = torch.from_numpy(np.asarray(mask))
        if isinstance(pred, torch.Tensor) and self.cm.device is None:
            target = target.to(pred.device)
        before = int(self.cm.counts[:, -1].sum())
        self.cm.update(pred, target)
        self.out_of_range += int(self.cm.counts[:, -1].sum()) - before
        self.num_images += 1

    def skip(self, sample_id, error: str) -> None:
        """Record an unreadable sample (or raise, unless ``skip_corrupt``)."""
        if not self.skip_corrupt:
            raise ValueError(f"sample {sample_id}: {error} (pass skip_corrupt=True / --skip-corrupt to report "
                             "and skip such samples)")
        warnings.warn(f"skipping sample {sample_id}: {error}", stacklevel=3)
        self.skipped.append(str(sample_id))

    def evaluate(self) -> SegMetrics:
        """Scores over every rank's samples (a collective call under ``torch.distributed``)."""
        import torch.distributed as dist

        metrics = self.cm.compute()
        totals = all_reduce_sum(torch.tensor([self.num_images, self.out_of_range], dtype=torch.int64))
        metrics.num_images = int(totals[0])
        skipped = self.skipped
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, skipped)
            skipped = sorted(s for part in gathered for s in part)
        metrics.skipped = list(skipped)
        if metrics.num_images == 0:
            raise ValueError("no sample could be scored" + (f": all {len(skipped)} were skipped as unreadable "
                                                             f"(first: {skipped[:3]})" if skipped else ""))
        if int(totals[1]):
            warnings.warn(f"{int(totals[1])} labelled pixels were predicted with class ids outside "
                          f"0..{self.num_classes - 1}; they count as misses", stacklevel=2)
        return metrics


class _Items:
    """Worker side: ``dataset[i]`` for this shard, or an error record naming the sample."""

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


def _sample_id(dataset, index: int) -> str:
    samples = getattr(dataset, "samples", None)
    return samples[index].id if samples is not None else f"#{index}"


def _first(batch):
    return batch[0]


def inference_on_dataset(predict, dataset, evaluator: SemSegEvaluator, *, num_workers: int = 0, shard=None,
                         progress: bool = True, save_dir=None, desc: str = "evaluate") -> SegMetrics:
    """Run ``predict(item) -> (H, W) label map`` over this rank's shard of ``dataset``, score with
    ``evaluator`` and return its :class:`SegMetrics`.

    ``save_dir`` keeps each prediction as ``save_dir/<id>.png``; one already there is read back
    instead of recomputed, so an interrupted run resumes where it stopped.
    """
    from tqdm import tqdm

    if not callable(predict):
        raise TypeError(f"predict must be callable, got {type(predict).__name__}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    items = _Items(dataset, this_shard(len(dataset), shard))
    loader = torch.utils.data.DataLoader(items, batch_size=1, shuffle=False, num_workers=num_workers,
                                         collate_fn=_first, prefetch_factor=4 if num_workers > 0 else None)
    save_dir = None if save_dir is None else Path(save_dir)
    evaluator.reset()
    for item in tqdm(loader, total=len(items), desc=desc, unit="img", disable=not progress):
        if "error" in item:
            evaluator.skip(item["id"], item["error"])
            continue
        cached = None if save_dir is None else save_dir / f"{item['id']}.png"
        if cached is not None and cached.is_file():
            pred = read_prediction_png(cached)
        else:
            pred = predict(item)
            if cached is not None:
                save_label_png(cached, torch.as_tensor(pred).cpu().numpy())
        evaluator.process(item, pred)
    return evaluator.evaluate()


def _check_dataset(dataset) -> int:
    k = getattr(dataset, "num_classes", None)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise TypeError(f"dataset must have an int num_classes >= 1, got {type(dataset).__name__}")
    return k


def _evaluator(dataset, ignore_index, skip_corrupt, device=None) -> SemSegEvaluator:
    k = _check_dataset(dataset)
    names = tuple(getattr(dataset, "classes", ()))
    return SemSegEvaluator(k, ignore_index=ignore_index, class_names=names if len(names) == k else None,
                           device=device, skip_corrupt=skip_corrupt)


class _PredictionFiles:
    """A dataset's ground truth paired with ``pred_dir/<id>.png`` (images are not decoded)."""

    def __init__(self, dataset, pred_dir: Path):
        self.dataset, self.pred_dir = dataset, pred_dir
        self.num_classes, self.classes = dataset.num_classes, getattr(dataset, "classes", ())

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if hasattr(self.dataset, "load_mask") and hasattr(self.dataset, "samples"):
            item = {"id": self.dataset.samples[i].id, "mask": self.dataset.load_mask(i)}
        else:
            full = self.dataset[i]
            item = {"id": full["id"], "mask": full["mask"]}
        path = self.pred_dir / f"{item['id']}.png"
        try:
            item["pred"] = read_prediction_png(path)
        except (FileNotFoundError, UnreadableFileError) as err:
            err.sample_id = item["id"]
            raise
        if item["pred"].shape != item["mask"].shape:
            raise ValueError(f"prediction {path} is {item['pred'].shape[1]}x{item['pred'].shape[0]} (WxH) but its "
                             f"label map is {item['mask'].shape[1]}x{item['mask'].shape[0]}")
        return item


def evaluate_predictions(dataset, pred_dir, *, num_workers: int = 0, skip_corrupt: bool = False,
                         ignore_index: int = IGNORE_INDEX, progress: bool = True, shard=None) -> SegMetrics:
    """Score PNG label maps ``pred_dir/<id>.png`` against ``dataset``'s ground truth.

    Example:
        >>> from clipapro.data import build_dataset  # doctest: +SKIP
        >>> ds = build_dataset("voc21", "VOCdevkit/VOC2012", split="val")  # doctest: +SKIP
        >>> evaluate_predictions(ds, "preds/", num_workers=4).as_dict()["mIoU"]  # doctest: +SKIP
    """
    evaluator = _evaluator(dataset, ignore_index, skip_corrupt)
    if not Path(pred_dir).is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    return inference_on_dataset(lambda item: item["pred"], _PredictionFiles(dataset, Path(pred_dir)), evaluator,
                                num_workers=num_workers, shard=shard, progress=progress)


def evaluate_pipeline(predict, dataset, *, num_workers: int = 0, skip_corrupt: bool = False,
                      ignore_index: int = IGNORE_INDEX, progress: bool = True, shard=None, device=None,
                      save_dir=None) -> SegMetrics:
    """Run ``predict(image uint8 (H, W, 3)) -> (H, W) label map`` over ``dataset`` and score it.

    ``device``: where the counts live (default: the first prediction's); ``save_dir``: keep the
    predictions as PNGs and resume from them (see :func:`inference_on_dataset`).

    Example:
        >>> ds = build_dataset("voc21", "VOCdevkit/VOC2012")  # doctest: +SKIP
        >>> evaluate_pipeline(lambda img: np.zeros(img.shape[:2], np.int64), ds).miou  # doctest: +SKIP
    """
    if not callable(predict):
        raise TypeError(f"predict must be callable, got {type(predict).__name__}")
    evaluator = _evaluator(dataset, ignore_index, skip_corrupt, device=device)
    return inference_on_dataset(lambda item: predict(item["image"]), dataset, evaluator, num_workers=num_workers,
                                shard=shard, progress=progress, save_dir=save_dir, desc="predict+evaluate")
