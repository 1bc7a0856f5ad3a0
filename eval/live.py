"""Live-pipeline evaluation: any ``predict(image) -> label map`` callable over a catalog dataset.

``predict`` takes one uint8 (H, W, 3) numpy RGB image and returns an integer label map (H, W) at
the image's resolution (numpy or tensor, any device). Samples are read by DataLoader workers while
``predict`` runs in the main process; a tqdm bar shows progress. Under ``torch.distributed`` every
rank evaluates its share and rank 0 writes the files.

Example:
    >>> import numpy as np
    >>> from eval.live import evaluate_live
    >>> m = evaluate_live(lambda img: np.zeros(img.shape[:2], np.int64), dataset="voc21",
    ...                   root="data/VOCdevkit/VOC2012", out="runs/zero.json")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from clipapro.data import build_dataset, get_dataset_spec
from clipapro.data.base import LimitedDataset
from clipapro.metrics import SegMetrics, evaluate_pipeline

__all__ = ["evaluate_live", "write_reports"]


def _is_rank0() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def write_reports(metrics: SegMetrics, *, out=None, extra: dict | None = None, title: str = "") -> str:
    """Write ``out`` (.json) plus ``.csv`` and ``.md`` beside it (rank 0 only); returns the Markdown."""
    from clipapro.io import write_bytes_atomic, write_json_atomic

    table = metrics.to_markdown(title=title or None)
    if out is not None and _is_rank0():
        out = Path(out)
        write_json_atomic(out, {**(extra or {}), **metrics.as_dict()})
        write_bytes_atomic(out.with_suffix(".csv"), metrics.to_csv().encode())
        write_bytes_atomic(out.with_suffix(".md"), table.encode())
    return table


def evaluate_live(predict, *, dataset, root=None, split=None, num_workers: int = 4, limit: int | None = None,
                  skip_corrupt: bool = False, save_dir=None, out=None, extra: dict | None = None,
                  progress: bool = True, **dataset_options) -> SegMetrics:
    """Build ``dataset`` from the catalog (or take a dataset object), run ``predict`` over it, score it.

    ``save_dir`` keeps each prediction as ``<id>.png`` and makes the run resumable; ``out`` writes
    JSON/CSV/Markdown reports; ``extra`` adds fields (model, protocol ...) to the JSON.
    """
    if isinstance(dataset, str):
        name = dataset
        spec = get_dataset_spec(name)
        split = spec.default_split if split is None else split
        ds = build_dataset(name, root, split=split, **dataset_options)
    else:
        name, ds = getattr(dataset, "name", type(dataset).__name__), dataset
    if limit is not None:
        ds = LimitedDataset(ds, limit)
    metrics = evaluate_pipeline(predict, ds, num_workers=num_workers, skip_corrupt=skip_corrupt,
                                save_dir=save_dir, progress=progress and _is_rank0())
    info = {"dataset": name, "split": split, **(extra or {})}
    write_reports(metrics, out=out, extra=info, title=f"{name} {split or ''}: {metrics.num_images} images")
    return metrics
