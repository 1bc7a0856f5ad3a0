import pytest
import torch
import torch.nn.functional as F

from clipapro.adapters.points import AProSoftLabelLoss, PartialCrossEntropy


def _labels(b, h, w, frac=0.1, k=3):
    lab = torch.randint(0, k, (b, h, w))
    lab[torch.rand(b, h, w) > frac] = 255
    return lab


def test_partial_ce_equals_ce_over_labelled_pixels():
    logits = torch.randn(2, 3, 8, 9)
    lab = _labels(2, 8, 9)
    known = lab != 255
    ref = F.cross_entropy(logits.permute(0, 2, 3, 1)[known], lab[known])
    torch.testing.assert_close(PartialCrossEntropy()(logits, lab), ref)


def test_partial_ce_without_labels_is_zero_with_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = PartialCrossEntropy()(logits, torch.full((1, 4, 4), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_partial_ce_bad_labels():
    logits = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="class 3"):
        PartialCrossEntropy()(logits, torch.full((1, 4, 4), 3))
    with pytest.raises(ValueError, match="matching logits"):
        PartialCrossEntropy()(logits, torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="dtype"):
        PartialCrossEntropy()(logits, torch.zeros(1, 4, 4))


def test_soft_label_loss_zero_at_fixed_point_and_positive_otherwise():
    img = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    const = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64).view(1, 3, 1, 1).expand(2, 3, 12, 12)
    loss_fn = AProSoftLabelLoss()
    assert float(loss_fn(const, img)) == pytest.approx(0.0, abs=1e-9)
    assert float(loss_fn(torch.randn(2, 3, 12, 12, dtype=torch.float64), img)) > 1e-3
    ce = AProSoftLabelLoss(distance="ce")(torch.randn(2, 3, 12, 12, dtype=torch.float64), img)
    assert float(ce) > 0


def test_soft_label_gradients_only_through_prediction():
    img = torch.rand(1, 3, 10, 10, requires_grad=True)
    logits = torch.randn(1, 4, 10, 10, requires_grad=True)
    loss_fn = AProSoftLabelLoss(global_weight=1.0, local_weight=0.5)
    loss_fn(logits, img).backward()
    assert img.grad is None
    t = loss_fn.targets(logits, img.detach())
    lg = logits.detach().clone().requires_grad_(True)
    p = torch.softmax(lg, 1)
    ref = (t.global_ - p).abs().sum(1).mean() + 0.5 * (t.local - p).abs().sum(1).mean()
    ref.backward()
    torch.testing.assert_close(logits.grad, lg.grad)


def test_clamped_labels_enter_the_targets():
    img = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    logits = torch.zeros(1, 2, 10, 10, dtype=torch.float64)
    lab = torch.full((1, 10, 10), 255)
    lab[0, :, :3] = 1
    t = AProSoftLabelLoss().targets(logits, img, lab)
    assert float(t.local[0, 1, :, 0].min()) > 0.5 and float(t.global_[0, 1].mean()) > 0.5
    t0 = AProSoftLabelLoss(clamp_labels=False).targets(logits, img, lab)
    torch.testing.assert_close(t0.local, torch.full_like(t0.local, 0.5))


def test_soft_label_errors():
    with pytest.raises(ValueError, match="image"):
        AProSoftLabelLoss()(torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="distance"):
        AProSoftLabelLoss(distance="kl")
    with pytest.raises(TypeError, match="unknown"):
        AProSoftLabelLoss(zeta=0.1)
