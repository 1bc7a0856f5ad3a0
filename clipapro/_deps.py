"""Optional dependencies: each stack beyond the core is an extra, and a missing one says which.

Core (``pip install clipapro``): numpy and torch (``import clipapro`` and the propagation ops), plus
pillow and tqdm (decoding photos and label PNGs, progress bars of every command). The extras:

=========  ===========================================================  ==========================
extra      packages                                                     for
=========  ===========================================================  ==========================
clip       open_clip_torch, transformers, safetensors, torchvision      CLIP dense prediction
data       datasets                                                     Hugging Face datasets
viz        matplotlib, scikit-image                                     figures, the demo's photos
train      torchvision, scipy                                           students, scribble tools
bench      pydensecrf2, opencv-python-headless, scikit-image            baselines of the studies
instances  pycocotools, torchvision                                   COCO/VOC instances, mask AP
all        clip + data + viz + train + instances
=========  ===========================================================  ==========================
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "require"]

#: module -> (pip package, extra)
EXTRAS = {
    "open_clip": ("open_clip_torch", "clip"),
    "transformers": ("transformers", "clip"),
    "safetensors": ("safetensors", "clip"),
    "torchvision": ("torchvision", "train"),
    "datasets": ("datasets", "data"),
    "matplotlib": ("matplotlib", "viz"),
    "skimage": ("scikit-image", "viz"),
    "scipy": ("scipy", "train"),
    "pydensecrf": ("pydensecrf2", "bench"),
    "cv2": ("opencv-python-headless", "bench"),
    "pycocotools": ("pycocotools", "instances"),
}


def require(module: str, *, what: str = ""):
    """Import ``module``; when it is missing, raise ImportError naming the package and the extra.

    Example:
        >>> require("numpy").__name__
        'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        package, extra = EXTRAS.get(top, (top, "all"))
        need = f"{what} needs " if what else ""
        raise ImportError(f"{need}the optional package {package}, not installed here: "
                          f"pip install 'clipapro[{extra}]' (or pip install {package})") from err
