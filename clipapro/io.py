"""Files and conversions, one place for all of clipapro: photos, label PNGs, probability maps, atomic writes.

Conventions used everywhere:

* a photo read from disk is uint8 (H, W, 3) RGB (numpy); :func:`image_to_tensor` turns any accepted
  photo (PIL image, uint8 (H, W, 3) / (B, H, W, 3), float (3, H, W) / (B, 3, H, W) in [0, 1], numpy
  or tensor) into float32 (B, 3, H, W) in [0, 1] on the CPU, the contract of every refiner and tool;
* label maps are integer (H, W) maps with :data:`IGNORE_INDEX` (255) for unlabelled / void pixels,
  stored as single-channel palette PNGs (:func:`save_label_png`, :func:`read_label_png`); at most
  :data:`MAX_PNG_CLASSES` classes fit, because 255 is reserved;
* probability maps are (K, H, W) ``.npy`` (or a one-array ``.npz``), :func:`load_probs`;
* every file is written to a temporary name beside its target, flushed to disk (``fsync`` of the file
  and its folder) and renamed: an interrupted run never leaves a partial file, and a crash right after
  the rename does not lose it. Only regular files are ever replaced: a symlink or a device node at the
  target is refused.

Missing files raise ``FileNotFoundError``; unreadable or malformed ones raise :class:`UnreadableFileError`
(a ``ValueError``); both name the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "IGNORE_INDEX", "MAX_PNG_CLASSES", "UnreadableFileError", "atomic_path", "check_output_path", "image_to_tensor",
    "load_probs", "probs_to_tensor", "read_image", "read_label_png", "save_label_png", "save_probs", "voc_palette",
    "write_bytes_atomic", "write_json_atomic",
]

#: Label value of unlabelled / void pixels, in ground truth, scribbles and pseudo labels alike.
IGNORE_INDEX = 255
#: Classes 0..254 fit a uint8 label PNG; 255 is :data:`IGNORE_INDEX`.
MAX_PNG_CLASSES = 255
#: A float image must lie in [0, 1] within this tolerance (it is then clamped).
UNIT_RANGE_TOLERANCE = 1e-3
#: Probabilities must sum to one along K within this tolerance (float16 inputs round).
SUM_TOLERANCE = 1e-3


class UnreadableFileError(ValueError):
    """A file exists but cannot be decoded or has the wrong content; ``path`` names it."""

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


# -- writing -----------------------------------------------------------------------------------------
def check_output_path(path) -> Path:
    """Refuse an output target that exists and is not a regular file (symlink, device, folder, FIFO):
    writing there would replace the node itself. Returns ``path`` as a Path."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) \
            else "not a regular file (device, FIFO or socket)"
        raise ValueError(f"output {path} exists and is {kind}: clipapro only replaces regular files")
    return path


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder; the rename still holds
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    Example:
        >>> with atomic_path("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp, format="PNG")
    """
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        check_output_path(path)  # the target may have become a link while we wrote
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path, obj, **kwargs) -> None:
    kwargs.setdefault("indent", 2)
    write_bytes_atomic(path, (json.dumps(obj, **kwargs) + "\n").encode())


# -- photos ------------------------------------------------------------------------------------------
def _open_pil(path: Path, what: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        img = Image.open(path)
        img.load()  # decode now, so a truncated file fails here and names itself
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UnreadableFileError(f"cannot read {what} {path}: {err}", path=path) from None
    if img.width == 0 or img.height == 0:
        raise UnreadableFileError(f"cannot read {what} {path}: it has no pixels", path=path)
    return img


def read_image(path) -> np.ndarray:
    """Read a photo as uint8 (H, W, 3) RGB; grey, palette and RGBA images are converted.

    Example:
        >>> img = read_image("JPEGImages/2007_000033.jpg")  # doctest: +SKIP
        >>> img.shape, img.dtype  # doctest: +SKIP
        ((366, 500, 3), dtype('uint8'))
    """
    with _open_pil(Path(path), "image") as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy


def read_label_png(path, *, what: str = "label map") -> np.ndarray:
    """Read a label map PNG as int64 (H, W): palette ('P') PNGs give their indices, not colours.

    Accepts single-channel modes P, L, I, I;16 and 1; an RGB label file is an error, because its
    colours would silently become wrong labels.
    """
    path = Path(path)
    with _open_pil(path, what) as img:
        if img.mode not in ("P", "L", "I", "I;16", "1"):
            raise UnreadableFileError(f"{what} {path} has mode {img.mode!r}: expected a single-channel index "
                                      "PNG (P or L)", path=path)
        return np.asarray(img, dtype=np.int64)


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour palette (bit-interleaved), flat list of 3*n ints; index 255 is (224,224,192)."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal.extend([r, g, b])
    return pal


def save_label_png(path, labels, palette=None) -> None:
    """Write an (H, W) integer label map (values 0..255) as a palette PNG, atomically.

    ``palette`` is a flat list of 768 ints; default: the PASCAL VOC palette.
    """
    from PIL import Image

    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"labels must lie in 0..255 for a palette PNG, got range [{arr.min()}, {arr.max()}]")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(palette if palette is not None else voc_palette())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


# -- probability maps --------------------------------------------------------------------------------
def load_probs(path) -> np.ndarray:
    """Read a (K, H, W) probability (or logit) map from ``.npy``, or from an ``.npz`` holding one array
    (or a ``probs`` entry, as ``pseudo-label --soft`` writes). Pickled arrays are refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probability file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UnreadableFileError(f"cannot read probabilities {path}: {err}", path=path) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            keys = list(data.keys())
            if "probs" in keys:
                key = "probs"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise UnreadableFileError(f"{path} holds arrays {keys}: expected one array or one named 'probs'",
                                          path=path)
            try:
                data = data[key]
            except (ValueError, OSError, EOFError) as err:
                raise UnreadableFileError(f"cannot read probabilities {path}: {err}", path=path) from None
    if not isinstance(data, np.ndarray) or data.ndim != 3:
        shape = getattr(data, "shape", None)
        raise UnreadableFileError(f"{path} must hold a (K, H, W) array, got shape {shape}", path=path)
    return data


def save_probs(path, probs) -> None:
    """Write a (K, H, W) map as float32 ``.npy``, atomically."""
    arr = np.asarray(probs, dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


# -- conversions -------------------------------------------------------------------------------------
def _as_tensor(x, name: str):
    import torch

    if hasattr(x, "convert") and hasattr(x, "size") and not isinstance(x, (np.ndarray, torch.Tensor)):
        x = np.array(x.convert("RGB"))  # PIL image
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number):
            raise TypeError(f"{name} must be a numeric array, got dtype {x.dtype}")
        arr = np.ascontiguousarray(x)
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch wants writable memory
    if isinstance(x, torch.Tensor):
        return x.detach()
    raise TypeError(f"{name} must be a numpy array, torch.Tensor or PIL image, got {type(x).__name__}")


def image_to_tensor(image, *, name: str = "image", dtype=None):
    """Any accepted photo -> float32 (or ``dtype``) (B, 3, H, W) in [0, 1] on the CPU.

    Accepts a PIL image, uint8 (H, W, 3) or (B, H, W, 3), or float (3, H, W) or (B, 3, H, W) in [0, 1]
    (within 1e-3, then clamped), as numpy arrays or tensors.

    Example:
        >>> image_to_tensor(np.zeros((4, 6, 3), np.uint8)).shape
        torch.Size([1, 3, 4, 6])
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    t = _as_tensor(image, name)
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        if t.dim() not in (3, 4) or t.shape[-1] != 3:
            raise ValueError(f"uint8 {name} must have shape (H, W, 3) or (B, H, W, 3), got {tuple(t.shape)}")
        t = t.unsqueeze(0) if t.dim() == 3 else t
        return t.permute(0, 3, 1, 2).to("cpu", dtype).div_(255.0).contiguous()
    if not t.is_floating_point():
        raise TypeError(f"{name} must be uint8 (H, W, 3) or floating point (3, H, W) in [0, 1], got {t.dtype}")
    if t.dim() not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"float {name} must have shape (3, H, W) or (B, 3, H, W), got {tuple(t.shape)}")
    t = t.unsqueeze(0) if t.dim() == 3 else t
    t = t.to("cpu", dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values (shape {tuple(t.shape)})")
    lo, hi = float(t.min()), float(t.max())
    if lo < -UNIT_RANGE_TOLERANCE or hi > 1 + UNIT_RANGE_TOLERANCE:
        raise ValueError(f"float {name} must lie in [0, 1] (got range [{lo:.3g}, {hi:.3g}]); pass uint8 for 0..255")
    return t.clamp(0, 1).contiguous()


def probs_to_tensor(probs, *, logits: bool = False):
    """(K, H, W) or (B, K, H, W) probabilities (or logits, softmax over K first) -> float32
    (B, K, H, W) probabilities on the CPU, and whether the input had no batch dimension.

    Example:
        >>> p, squeezed = probs_to_tensor(np.full((2, 3, 3), 0.5, np.float32))
        >>> tuple(p.shape), squeezed
        ((1, 2, 3, 3), True)
    """
    import torch

    name = "logits" if logits else "probs"
    t = _as_tensor(probs, name)
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if t.dim() not in (3, 4):
        raise ValueError(f"{name} must have shape (K, H, W) or (B, K, H, W), got {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    squeeze = t.dim() == 3
    t = (t.unsqueeze(0) if squeeze else t).to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values (shape {tuple(t.shape)})")
    if logits:
        return torch.softmax(t, 1).contiguous(), squeeze
    lowest = float(t.min())
    if lowest < -1e-6:
        raise ValueError(f"probs must be non-negative (min {lowest:.3g}); pass logits=True for logits")
    err = float((t.sum(1) - 1).abs().max())
    if err > SUM_TOLERANCE:
        raise ValueError(f"probs must sum to one along K (axis {0 if squeeze else 1}), max deviation {err:.3g}; "
                         "pass logits=True for unnormalised scores")
    if err > 1e-6 or lowest < 0:  # renormalise only what needs it (full passes cost time)
        t = t.clamp_min(0)
        t = t / t.sum(1, keepdim=True)
    return t.contiguous(), squeeze
