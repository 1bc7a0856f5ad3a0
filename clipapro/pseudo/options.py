"""Checks shared by the pseudo-labelling and training jobs that must pass before any work starts:
the dataset and the class set."""

from __future__ import annotations

__all__ = ["check_class_set", "load_dataset"]


def load_dataset(name: str, root, split, *, classes=None, options=None):
    """Build a dataset from the catalog; the folder/hf readers get ``classes``. ``split=None`` means
    ``train`` (a folder dataset without split files: all its images)."""
    from clipapro.data import build_dataset, get_dataset_spec

    spec = get_dataset_spec(name)  # unknown names fail here, naming the catalog
    if split is None:
        split = "train" if spec.default_split else spec.default_split
    opts = dict(options or {})
    if spec.class_set is None and classes is not None:
        opts.setdefault("classes", classes)
    return build_dataset(name, root, split=split, **opts)


def check_class_set(classes, dataset):
    """The class set for CLIP: ``classes`` (a spec) or the dataset's own; its names must equal the
    dataset's label names in order (synonyms for prompts belong in the class file, after a colon).
    """
    from clipapro.prompts import get_class_set

    cs = dataset.class_set if classes is None else get_class_set(classes)
    ds_names = tuple(dataset.classes)
    if tuple(cs.names) != ds_names:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(cs.names, ds_names, strict=False)) if a != b][:3]
        raise ValueError(
            f"class set {cs.name!r} ({len(cs)} classes) does not match dataset "
            f"{getattr(dataset, 'name', '?')!r} ({len(ds_names)} classes)"
            f"{'; first differences (index, classes, dataset): ' + str(diff) if diff else ''}"
            "; give prompt synonyms as 'name: prompt 1, prompt 2' lines in a class file instead of renaming")
    return cs
