"""Evaluation entry points (scripts; run from the repository root).

* ``python -m clipapro evaluate ...``: score saved PNG predictions (the CLI command).
* :mod:`eval.live`: run any ``predict(image_uint8_HWC) -> label map (H, W)`` callable over a catalog
  dataset and write JSON / CSV / Markdown (the live-pipeline evaluator; knows nothing of CLIP).
* ``python eval/run_clip_pipeline.py ...``: CLIP dense prediction -> optional refinement (APro,
  CRF-tree, PAMR) -> argmax -> :mod:`eval.live`. Needs real CLIP weights for meaningful numbers.

The per-dataset protocol (resize, sliding window, ignore handling) is in ``eval/PROTOCOL.md`` and
in :data:`clipapro.data.registry` (``DatasetSpec``).
"""
