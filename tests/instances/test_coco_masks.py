"""box_probs_to_masks: the two overlap rules and the mean-probability score, on hand-made soft masks."""

import pytest
import torch

from clipapro.pseudo.coco_masks import box_probs_to_masks, partial_path


def test_overlap_rules_and_mean_probability():
    p = torch.zeros(2, 1, 4, dtype=torch.float64)
    p[0, 0] = torch.tensor([0.9, 0.7, 0.6, 0.1])
    p[1, 0] = torch.tensor([0.0, 0.8, 0.55, 0.3])
    ex, mean_ex = box_probs_to_masks(p)
    assert ex[:, 0].tolist() == [[True, False, True, False], [False, True, False, False]]
    assert mean_ex.tolist() == pytest.approx([(0.9 + 0.6) / 2, 0.8])
    ind, mean_ind = box_probs_to_masks(p, overlap="independent")
    assert ind[:, 0].tolist() == [[True, True, True, False], [False, True, True, False]]
    assert mean_ind.tolist() == pytest.approx([(0.9 + 0.7 + 0.6) / 3, (0.8 + 0.55) / 2])
    empty, mean_empty = box_probs_to_masks(p, threshold=0.95)
    assert not empty.any() and mean_empty.tolist() == [0, 0]
    with pytest.raises(ValueError, match="threshold"):
        box_probs_to_masks(p, threshold=1.0)
    with pytest.raises(ValueError, match="overlap"):
        box_probs_to_masks(p, overlap="union")
    with pytest.raises(ValueError, match=r"\(M, H, W\)"):
        box_probs_to_masks(p[0, 0])
    assert partial_path("out/m.json").name == "m.json.partial.jsonl"
