"""Pseudo-label generation: dense class probabilities -> refinement -> label PNG (+ soft labels).

Output folder layout::

    OUT/manifest.json        full configuration, its sha256 hash, class names, and (when all images
                             are done) "complete": true with the image count
    OUT/labels/<id>.png      (H, W) palette PNG, value k = class k, 255 = uncertain / ignore
    OUT/soft/<id>.npz        optional: "probs" (K, H, W) float16, deflate-compressed
    OUT/.checksums/r<k>.jsonl  one line per finished image written by rank k: sha256 of its files

Every file is written to a temporary name, fsynced and renamed, so a label file either exists whole
or not at all. Rerunning skips the images whose files exist AND match the checksums recorded when they
were written, and redoes the rest (resume): a 0-byte, truncated or replaced file is redone. Files
without a recorded checksum (written by hand, or by an older clipapro) must decode to the image's
size. Each image is processed
alone (batch of one) so its bytes never depend on which other images share a batch, a shard or a
resumed run. Under ``torchrun`` rank r of W takes images r, r+W, r+2W, ... (see
:func:`~clipapro.distributed.shard_indices`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from clipapro.distributed import shard_indices
from clipapro.io import IGNORE_INDEX, MAX_PNG_CLASSES, atomic_path, image_to_tensor, save_label_png, write_json_atomic

__all__ = [
    "check_writable_dir", "config_hash", "generate_pseudo_labels", "item_ids", "label_path",
    "load_soft_labels", "prepare_manifest", "probs_to_labels", "save_soft_labels", "soft_path",
]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys): equal configs, equal hashes."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _safe_id(image_id: str) -> str:
    p = PurePosixPath(str(image_id).replace("\\", "/"))
    if not str(image_id) or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"image id {image_id!r} cannot be used as a relative file name")
    return str(p)


def label_path(out_dir, image_id: str) -> Path:
    """``OUT/labels/<id>.png`` (ids may contain sub-folders)."""
    return Path(out_dir) / "labels" / f"{_safe_id(image_id)}.png"


def soft_path(out_dir, image_id: str) -> Path:
    """``OUT/soft/<id>.npz``."""
    return Path(out_dir) / "soft" / f"{_safe_id(image_id)}.npz"


def probs_to_labels(probs: torch.Tensor, *, threshold: float | None = None,
                    ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Argmax labels of (K, H, W) probabilities as (H, W) uint8; pixels whose top probability is
    below ``threshold`` become ``ignore_index``.

    Example:
        >>> p = torch.tensor([[[0.9, 0.4]], [[0.1, 0.6]]])
        >>> probs_to_labels(p, threshold=0.5).tolist()
        [[0, 1]]
    """
    if probs.dim() != 3:
        raise ValueError(f"probs must be (K, H, W), got shape {tuple(probs.shape)}")
    if probs.shape[0] > MAX_PNG_CLASSES:
        raise ValueError(f"at most {MAX_PNG_CLASSES} classes fit a uint8 label PNG, got {probs.shape[0]}")
    top, labels = probs.max(0)
    if threshold is not None:
        labels = torch.where(top < threshold, torch.full_like(labels, ignore_index), labels)
    return labels.to(torch.uint8).cpu().numpy()


def save_soft_labels(path, probs: torch.Tensor) -> None:
    """Write (K, H, W) probabilities as float16 in a deflate-compressed ``.npz`` (key ``probs``),
    atomically and byte-reproducibly (fixed zip timestamp, unlike ``np.savez_compressed``)."""
    arr = probs.detach().to(torch.float16).cpu().numpy()
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.ascontiguousarray(arr), allow_pickle=False)
    info = zipfile.ZipInfo("probs.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(info, npy.getvalue(), compresslevel=6)


def load_soft_labels(path) -> torch.Tensor:
    """(K, H, W) float16 soft labels written by :func:`save_soft_labels`."""
    with np.load(path, allow_pickle=False) as data:
        return torch.from_numpy(data["probs"])


def check_writable_dir(path) -> Path:
    """Create ``path`` if needed and prove it is writable by writing and removing a probe file."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(f"output folder {str(path)!r} is not writable: {err.strerror or err}") from None
    return path


def prepare_manifest(out_dir, config: dict, *, class_names, overwrite: bool = False,
                     write: bool = True) -> dict:
    """Check ``OUT/manifest.json`` against ``config`` and (on the writing rank) create it.

    A folder made with a different configuration is refused (its labels would be mixed with new
    ones) unless ``overwrite`` is set, in which case its manifest is replaced and every image is
    redone. Returns the manifest dict.
    """
    out_dir = Path(out_dir)
    manifest = {"format": FORMAT_VERSION, "config": config, "config_hash": config_hash(config),
                "classes": list(class_names)}
    path = out_dir / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("config_hash") != manifest["config_hash"] and not overwrite:
            changed = sorted(k for k in set(config) | set(old.get("config", {}))
                             if config.get(k) != old.get("config", {}).get(k))
            raise ValueError(
                f"{path} was written with a different configuration (changed: {changed}); "
                "use another --out-dir or --overwrite to redo all images")
        if old.get("config_hash") == manifest["config_hash"]:
            return old
    if write:
        import shutil

        for sub in ("labels", "soft", CHECKSUMS):  # a changed configuration invalidates every old output
            shutil.rmtree(out_dir / sub, ignore_errors=True)
        write_json_atomic(path, manifest)
    return manifest


def item_ids(dataset) -> list[str]:
    """All image ids of ``dataset`` in order, without decoding images when the dataset lists them."""
    for attr in ("ids", "image_ids"):
        ids = getattr(dataset, attr, None)
        if ids is not None:
            return [str(i) for i in (ids() if callable(ids) else ids)]
    return [str(_get(dataset[i], "id")) for i in range(len(dataset))]


def _get(item, key):
    return item[key] if isinstance(item, dict) else getattr(item, key)


def load_image(dataset, index: int) -> np.ndarray:
    """The (H, W, 3) uint8 image of sample ``index``, without reading its label map when the dataset
    lists its files (training and pseudo-labelling splits need not have ground truth)."""
    samples = getattr(dataset, "samples", None)
    if samples is not None and hasattr(samples[index], "image"):
        from clipapro.data.base import read_image

        return read_image(samples[index].image)
    return _get(dataset[index], "image")


def dense_probs_at(probs: torch.Tensor, size) -> torch.Tensor:
    """Bilinearly resize (B, K, h, w) probabilities to ``size`` = (H, W) and renormalise per pixel."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    up = torch.nn.functional.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
    up = up.clamp_min_(0)
    return up / up.sum(1, keepdim=True).clamp_min(1e-12)


def generate_pseudo_labels(dataset, predict, refine, out_dir, *, threshold: float | None = None,
                           soft: bool = False, rank: int = 0, world_size: int = 1,
                           progress: bool = True, limit: int | None = None, refine_workers: int = 0) -> dict:
    """Write pseudo labels for this rank's share of ``dataset`` into ``out_dir``; skip finished ones.

    Args:
        dataset: indexable, items with ``image`` (H, W, 3) uint8 and ``id`` (attributes or keys).
        predict: ``fn(image (1, 3, H, W) float in [0, 1]) -> (1, K, h, w)`` class probabilities
            (any h, w; resized to H, W here).
        refine: ``fn(image (1, 3, H, W), probs (1, K, H, W) float32 CPU) -> (1, K, H, W)`` (the refiner
            contract, e.g. :func:`clipapro.pseudo.pipeline.bound_refiner`).
        threshold: top probability below which a pixel is labelled 255.
        soft: also write float16 soft labels.
        limit: process at most this many of the dataset's images (the first ones), for smoke runs.
        refine_workers: threads that refine and write while the next images are predicted (useful
            when CLIP runs on a GPU); 0 refines inline. Outputs are the same either way.

    Returns:
        dict with ``done`` (newly written), ``skipped`` (already present), ``seconds`` (wall) and the
        time spent in ``predict`` and ``refine`` (summed over threads).

    Example:
        >>> # see clipapro/commands/pseudo_label.py for the wiring with CLIP and a dataset
    """
    from tqdm import tqdm

    ids = item_ids(dataset)
    n = len(ids) if limit is None else min(limit, len(ids))
    mine = shard_indices(n, rank, world_size)
    sums = load_checksums(out_dir)
    todo = [i for i in mine if not _finished(out_dir, ids[i], soft, sums, lambda i=i: image_size(dataset, i))]
    log = _ChecksumLog(out_dir, rank)
    for i in sorted(set(mine) - set(todo)):
        if ids[i] not in sums:  # intact but unrecorded (killed right after writing it): record it now
            log.record(ids[i], soft=soft)
    stats = {"done": 0, "skipped": len(mine) - len(todo), "predict_s": 0.0, "refine_s": 0.0}
    t0 = time.perf_counter()
    bar = tqdm(todo, unit="img", disable=not progress, desc=f"pseudo-label r{rank}/{world_size}",
               dynamic_ncols=True)

    def finish(image_id: str, probs: torch.Tensor, image: torch.Tensor) -> float:
        t = time.perf_counter()
        refined = refine(image, probs)
        seconds = time.perf_counter() - t
        if soft:  # soft file first, label PNG next, checksum record last: the record marks the image done
            save_soft_labels(soft_path(out_dir, image_id), refined[0])
        save_label_png(label_path(out_dir, image_id), probs_to_labels(refined[0], threshold=threshold))
        log.record(image_id, soft=soft)
        return seconds

    # refine_workers > 0: refinement (CPU, GIL released) and writing overlap the next predictions
    pool = ThreadPoolExecutor(refine_workers) if refine_workers > 0 else None
    pending: deque = deque()

    def collect(limit: int) -> None:
        while len(pending) > limit:
            stats["refine_s"] += pending.popleft().result()
            stats["done"] += 1

    try:
        for i in bar:
            image = image_to_tensor(load_image(dataset, i))
            t1 = time.perf_counter()
            with torch.no_grad():
                probs = predict(image)
                probs = dense_probs_at(probs.float(), image.shape[-2:]).cpu()
            stats["predict_s"] += time.perf_counter() - t1
            if pool is None:
                stats["refine_s"] += finish(ids[i], probs, image)
                stats["done"] += 1
            else:
                pending.append(pool.submit(finish, ids[i], probs, image))
                collect(2 * refine_workers)  # bounded queue: memory stays flat
        collect(0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
    stats["seconds"] = time.perf_counter() - t0
    return stats


CHECKSUMS = ".checksums"


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class _ChecksumLog:
    """Append-only, fsynced record of finished images of one rank (thread-safe)."""

    def __init__(self, out_dir, rank: int):
        import threading

        self.path = Path(out_dir) / CHECKSUMS / f"r{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.lock = Path(out_dir), threading.Lock()

    def record(self, image_id: str, *, soft: bool) -> None:
        entry = {"id": image_id, "label": _sha256(label_path(self.out_dir, image_id))}
        if soft:
            entry["soft"] = _sha256(soft_path(self.out_dir, image_id))
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self.lock, open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def load_checksums(out_dir) -> dict[str, dict]:
    """id -> {"label": sha256, "soft": sha256} from every rank's record (a torn last line is ignored)."""
    out: dict[str, dict] = {}
    folder = Path(out_dir) / CHECKSUMS
    for path in sorted(folder.glob("r*.jsonl")) if folder.is_dir() else []:
        for line in path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
                out[str(entry["id"])] = entry
            except (ValueError, KeyError, TypeError):
                continue
    return out


def image_size(dataset, index: int):
    """(H, W) of sample ``index`` from its file header (no decoding), or None when it has no file."""
    samples = getattr(dataset, "samples", None)
    if samples is None or not hasattr(samples[index], "image"):
        return None
    from PIL import Image

    try:
        with Image.open(samples[index].image) as im:
            return im.height, im.width
    except OSError:
        return None


def _decodes(path: Path, size) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return size is None or (im.height, im.width) == tuple(size)
    except Exception:  # noqa: BLE001 - any failure to decode means: redo it
        return False


def _finished(out_dir, image_id: str, soft: bool, sums: dict | None = None, size=None) -> bool:
    """Whether the outputs of ``image_id`` exist and are intact: they match their recorded checksums,
    or, without a record, decode (to ``size``, a value or a callable giving (H, W) or None)."""
    lab = label_path(out_dir, image_id)
    sp = soft_path(out_dir, image_id) if soft else None
    if not lab.is_file() or (sp is not None and not sp.is_file()):
        return False
    entry = (sums or {}).get(image_id)
    if entry is not None:
        ok = entry.get("label") == _sha256(lab)
        return ok and (sp is None or entry.get("soft") == _sha256(sp))
    size = size() if callable(size) else size
    if not _decodes(lab, size):
        return False
    if sp is None:
        return True
    try:
        load_soft_labels(sp)
        return True
    except Exception:  # noqa: BLE001 - unreadable soft labels: redo
        return False


def missing_labels(out_dir, ids, *, soft: bool = False) -> list[str]:
    """Ids among ``ids`` whose outputs are missing or damaged in ``out_dir`` (see :func:`_finished`)."""
    sums = load_checksums(out_dir)
    return [i for i in ids if not _finished(out_dir, i, soft, sums)]


def remove_stale_temp_files(out_dir) -> int:
    """Delete temporary files (``.<name>.<random>.tmp``) that a killed run left in ``out_dir``;
    call only while no process writes there. Returns how many were removed."""
    removed = 0
    for path in Path(out_dir).rglob(".*.tmp"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def mark_complete(out_dir, manifest: dict, num_images: int) -> dict:
    """Rewrite the manifest with ``complete: true`` and the image count (after all ranks finished)."""
    done = dict(manifest, complete=True, num_images=int(num_images))
    write_json_atomic(Path(out_dir) / MANIFEST, done)
    return done
