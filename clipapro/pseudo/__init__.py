"""Zero-annotation pipeline: APro-refined CLIP pseudo labels and self-training of a student.

* :mod:`~clipapro.pseudo.labels`: generation, manifest, resume, sharding (``clipapro pseudo-label``).
* :mod:`~clipapro.pseudo.train`: the self-training loop with exact resume (``clipapro train``).
* :mod:`~clipapro.pseudo.student`: registry of student segmentation networks.

Example:
    >>> from clipapro.pseudo import create_student, probs_to_labels
    >>> create_student("tiny_fcn", 3).num_classes
    3
"""

from clipapro.pseudo.labels import (
    config_hash,
    generate_pseudo_labels,
    label_path,
    load_soft_labels,
    probs_to_labels,
    soft_path,
)
from clipapro.pseudo.student import create_student, list_students, register_student
from clipapro.pseudo.train import TrainConfig, apro_soft_loss, train_student

__all__ = [
    "TrainConfig", "apro_soft_loss", "config_hash", "create_student", "generate_pseudo_labels", "label_path",
    "list_students", "load_soft_labels", "probs_to_labels", "register_student", "soft_path", "train_student",
]
