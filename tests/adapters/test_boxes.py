import itertools

import pytest
import torch

import clipapro
from clipapro.adapters import boxes as boxes_mod
from clipapro.adapters.boxes import BoxAProLoss, box_apro_targets, box_masks, box_projection_loss, check_boxes


def _brute_gp(values, guide, edges, zeta):
    """O(N^2) GP on a given spanning tree: max squared guide distance on the path, normalised."""
    c, h, w = values.shape
    n = h * w
    g = guide.reshape(guide.shape[0], n)
    adj = {i: [] for i in range(n)}
    for a, b in edges.tolist():
        wt = float(((g[:, a] - g[:, b]) ** 2).sum())
        adj[a].append((b, wt))
        adj[b].append((a, wt))
    x = values.reshape(c, n)
    out = torch.zeros_like(x)
    for i in range(n):
        m = {i: 0.0}
        stack = [i]
        while stack:
            u = stack.pop()
            for v, wt in adj[u]:
                if v not in m:
                    m[v] = max(m[u], wt)
                    stack.append(v)
        a = torch.tensor([torch.exp(torch.tensor(-m[j] / zeta ** 2, dtype=torch.float64)) for j in range(n)])
        out[:, i] = (x * a).sum(1) / a.sum()
    return out.reshape(c, h, w)


def test_box_masks_pixel_centre_convention():
    m = box_masks(torch.tensor([[2.0, 3.0, 5.0, 7.0]]), 10, 10)[0]
    assert m.sum() == 3 * 4 and m[3:7, 2:5].all()


def test_targets_zero_outside_boxes_and_shapes():
    img = torch.rand(3, 24, 20, dtype=torch.float64)
    probs = torch.rand(3, 24, 20, dtype=torch.float64)
    b = torch.tensor([[0, 0, 10, 12], [5, 5, 20, 24], [3.5, 2.2, 9.7, 8.1]], dtype=torch.float64)
    t = box_apro_targets(probs, img, b)
    inside = box_masks(b, 24, 20)
    for part in (t.global_, t.local):
        assert part.shape == (3, 24, 20)
        assert (part[~inside] == 0).all()
        assert (part[inside] > 0).any()


def test_global_target_matches_brute_force_with_per_instance_label_gp():
    torch.manual_seed(1)
    img = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    probs = torch.rand(2, 5, 6, dtype=torch.float64)
    b = [[0, 0, 4, 5], [2, 1, 6, 4]]
    t = box_apro_targets(probs, img, b, zeta_g=0.3, zeta_label=0.2)
    inside = box_masks(torch.tensor(b), 5, 6).double()
    edges = clipapro.grid_mst(img)[0][0]
    g1 = _brute_gp(probs, img[0], edges, 0.3)
    ref = torch.stack([_brute_gp(g1[i:i + 1], g1[i:i + 1], edges, 0.2)[0] for i in range(2)]) * inside
    torch.testing.assert_close(t.global_, ref, atol=1e-9, rtol=1e-7)


def test_instances_batched_equal_one_by_one():
    img = torch.rand(3, 16, 16, dtype=torch.float64)
    probs = torch.rand(3, 16, 16, dtype=torch.float64)
    b = torch.tensor([[0, 0, 8, 8], [4, 4, 16, 12], [1, 9, 15, 16]], dtype=torch.float64)
    t = box_apro_targets(probs, img, b)
    for i in range(3):
        ti = box_apro_targets(probs[i:i + 1], img, b[i:i + 1])
        torch.testing.assert_close(t.global_[i], ti.global_[0])
        torch.testing.assert_close(t.local[i], ti.local[0])


def test_one_tree_build_per_image_for_many_instances(monkeypatch):
    calls = []
    real = boxes_mod.kruskal_tree

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(boxes_mod, "kruskal_tree", counting)
    img = torch.rand(3, 20, 20)
    b = [[i, i, i + 8, i + 9] for i in range(7)]
    probs = torch.rand(7, 20, 20, requires_grad=True)
    BoxAProLoss()(probs, img, b).backward()
    assert len(calls) == 1
    kt = clipapro.kruskal_tree(img[None])
    box_apro_targets(probs, img, b, tree=kt)
    assert len(calls) == 1  # a prebuilt tree is reused, not rebuilt


def test_loss_zero_at_its_target_and_positive_otherwise():
    img = torch.zeros(1, 3, 20, 24, dtype=torch.float64)
    img[:, :, 4:12, 6:18] = 1.0
    pred = torch.zeros(1, 20, 24, dtype=torch.float64)
    pred[0, 4:12, 6:18] = 1.0
    box = [[6, 4, 18, 12]]
    loss_fn = BoxAProLoss()
    assert float(loss_fn(pred, img, box)) == pytest.approx(0.0, abs=1e-12)
    assert all(float(v) == pytest.approx(0.0, abs=1e-12) for v in loss_fn.last_terms.values())
    noisy = (pred + 0.3 * torch.rand_like(pred)).clamp(0, 1)
    noisy[0, 6, 8] = 0.1
    assert float(loss_fn(noisy, img, box)) > 1e-3
    assert float(box_projection_loss(pred * 0.5, box_masks(torch.tensor(box), 20, 24))[0]) > 0


def test_gradients_flow_only_through_predictions():
    img = torch.rand(3, 16, 16, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 16, 16, dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0, 0, 10, 10], [4, 6, 16, 16]], dtype=torch.float64)
    loss_fn = BoxAProLoss(projection_weight=0.0)
    loss_fn(logits.sigmoid(), img, b).backward()
    assert img.grad is None
    p = logits.detach().sigmoid().requires_grad_(True)
    t = box_apro_targets(p, img.detach(), b)
    inside = box_masks(b, 16, 16).double()
    area = inside.flatten(1).sum(1)
    ref = (2 * ((t.global_ - p).abs() * inside).flatten(1).sum(1) / area
           + ((t.local - p).abs() * inside).flatten(1).sum(1) / area).mean()
    ref.backward()
    expected = p.grad * logits.detach().sigmoid() * (1 - logits.detach().sigmoid())
    torch.testing.assert_close(logits.grad, expected)


def test_no_instances_gives_zero_loss_with_graph():
    probs = torch.rand(0, 8, 8, requires_grad=True)
    loss = BoxAProLoss()(probs, torch.rand(3, 8, 8), torch.zeros(0, 4))
    loss.backward()
    assert float(loss.detach()) == 0.0


@pytest.mark.parametrize("box, msg", [
    ([0, 0, 9, 5], "outside"), ([-1, 0, 4, 4], "outside"), ([4, 0, 4, 5], "x1 > x0"),
    ([0, 5, 4, 2], "y1 > y0"), ([0, float("nan"), 4, 4], "NaN"), ([1.1, 1.1, 1.3, 1.3], "no pixel"),
])
def test_bad_boxes_raise(box, msg):
    with pytest.raises(ValueError, match=msg):
        check_boxes([box], 8, 8)
    with pytest.raises(ValueError, match=msg):
        BoxAProLoss()(torch.rand(1, 8, 8), torch.rand(3, 8, 8), [box])


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(M, 4\)"):
        check_boxes([[0, 0, 4]], 8, 8)
    with pytest.raises(ValueError, match="instances"):
        box_apro_targets(torch.rand(2, 8, 8), torch.rand(3, 8, 8), [[0, 0, 4, 4]])
    with pytest.raises(ValueError, match="H x W"):
        box_apro_targets(torch.rand(1, 8, 9), torch.rand(3, 8, 8), [[0, 0, 4, 4]])
    with pytest.raises(ValueError, match="ONE image"):
        box_apro_targets(torch.rand(1, 8, 8), torch.rand(2, 3, 8, 8), [[0, 0, 4, 4]])
    with pytest.raises(TypeError, match="unknown"):
        BoxAProLoss(zeta=1.0)


def test_all_box_corners_allowed():
    for x0, y0 in itertools.product([0, 3], [0, 2]):
        assert check_boxes([[x0, y0, 8, 8]], 8, 8).shape == (1, 4)
