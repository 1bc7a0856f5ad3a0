"""The box-supervised mask loss and the Mask R-CNN it trains: targets, gradients, the RoIHeads swap."""

import pytest
import torch

from clipapro.adapters.mask_loss import box_supervised_mask_loss, roi_apro_targets, roi_box_masks, roi_crops
from clipapro.instances import (
    INSTANCE_MODELS,
    BoxSupervisedRoIHeads,
    create_instance_model,
    filled_box_masks,
    predict_instances,
)


def _box_scene(r=3, m=16):
    """R regions whose image is 1 inside an (RoI-frame) box and 0 outside: the box is the object."""
    boxes = torch.zeros(r, m, m, dtype=torch.bool)
    for i in range(r):
        boxes[i, 2 + i:12 + i, 3:10 + i] = True
    images = boxes[:, None].expand(r, 3, m, m).double()
    return images, boxes


# ---------------------------------------------------------------- the loss


def test_loss_is_zero_at_its_target_and_larger_elsewhere():
    images, boxes = _box_scene()
    at_target = torch.where(boxes, 40.0, -40.0).double()  # sigmoid saturates: the mask IS the box
    terms = box_supervised_mask_loss(at_target, images, boxes, zeta_g=0.05, zeta_s=0.05)
    for k in ("projection", "global", "local", "loss"):
        assert float(terms[k]) < 1e-9, (k, float(terms[k]))
    half = at_target.clone()
    half[:, :, :8] = -40.0  # the mask misses part of the box: projection and propagation both see it
    worse = box_supervised_mask_loss(half, images, boxes, zeta_g=0.05, zeta_s=0.05)
    assert float(worse["projection"]) > 0.05 and float(worse["loss"]) > 0.1


def test_loss_terms_against_hand_computation():
    """Projection dice and the box-normalised L1 to the targets, written out here."""
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    boxes = torch.zeros(2, 8, 8, dtype=torch.bool)
    boxes[0, 1:6, 2:7] = True
    boxes[1, 3:8, 0:4] = True
    terms = box_supervised_mask_loss(logits, images, boxes)
    p = logits[:, 0].sigmoid()
    q = boxes.double()

    def dice(a, b):
        return 1 - (2 * (a * b).sum(-1) + 1e-5) / ((a * a).sum(-1) + (b * b).sum(-1) + 1e-5)

    proj = dice(p.amax(-2), q.amax(-2)) + dice(p.amax(-1), q.amax(-1))
    t = roi_apro_targets(p, images, boxes)
    area = q.flatten(1).sum(1)
    glob = ((t.global_ - p).abs() * q).flatten(1).sum(1) / area
    loc = ((t.local - p).abs() * q).flatten(1).sum(1) / area
    torch.testing.assert_close(terms["projection"], proj.mean())
    torch.testing.assert_close(terms["global"], glob.mean())
    torch.testing.assert_close(terms["local"], loc.mean())
    torch.testing.assert_close(terms["loss"], 3 * proj.mean() + 2 * glob.mean() + loc.mean())
    assert float((t.global_ * (1 - q)).abs().max()) == 0 and float((t.local * (1 - q)).abs().max()) == 0


def test_gradient_reaches_only_the_mask_logits():
    images, boxes = _box_scene()
    logits = torch.randn(3, 16, 16, requires_grad=True)
    guide = images.float().clone().requires_grad_(True)
    box_f = boxes.float().requires_grad_(True)
    terms = box_supervised_mask_loss(logits, guide, box_f)
    terms["loss"].backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    assert guide.grad is None and box_f.grad is None


def test_empty_regions_give_zero_with_a_graph():
    logits = torch.zeros(0, 1, 28, 28, requires_grad=True)
    terms = box_supervised_mask_loss(logits, torch.zeros(0, 3, 28, 28), torch.zeros(0, 28, 28, dtype=torch.bool))
    assert float(terms["loss"].detach()) == 0
    terms["loss"].backward()
    assert logits.grad.shape == logits.shape


def test_loss_refuses_bad_inputs_by_name():
    images, boxes = _box_scene()
    with pytest.raises(ValueError, match="roi_box_masks"):
        box_supervised_mask_loss(torch.zeros(3, 16, 16), images, boxes[:, :8])
    with pytest.raises(ValueError, match="roi_images"):
        box_supervised_mask_loss(torch.zeros(3, 16, 16), images[:2], boxes)
    with pytest.raises(ValueError, match="class channel"):
        box_supervised_mask_loss(torch.zeros(3, 2, 16, 16), images, boxes)
    with pytest.raises(ValueError, match="mask_logits.*NaN"):
        box_supervised_mask_loss(torch.full((3, 16, 16), float("nan")), images, boxes)
    with pytest.raises(TypeError, match="unknown option"):
        box_supervised_mask_loss(torch.zeros(3, 16, 16), images, boxes, zeta=0.1)


def test_roi_box_masks_and_crops_by_hand():
    # RoI [0, 0, 4, 8] on a 4-cell grid: cell centres x = 0.5, 1.5, 2.5, 3.5 and y = 1, 3, 5, 7
    m = roi_box_masks(torch.tensor([[0.0, 0.0, 4.0, 8.0]]), torch.tensor([[1.0, 2.0, 3.0, 6.0]]), 4)[0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 1:3] = True
    assert torch.equal(m, expected)
    # a horizontal ramp image(y, x) = x + 0.5 (the pixel centre): a crop reads the cell centres back
    ramp = (torch.arange(20.0) + 0.5).expand(3, 10, 20).contiguous()
    crop = roi_crops(ramp, torch.tensor([[4.0, 2.0, 12.0, 6.0]]), 4, sampling_ratio=1)
    torch.testing.assert_close(crop[0, 0, 0], torch.tensor([5.0, 7.0, 9.0, 11.0]))


# ---------------------------------------------------------------- the model


def _targets():
    return [{"boxes": torch.tensor([[10.0, 8.0, 50.0, 60.0], [40.0, 20.0, 75.0, 50.0]]),
             "labels": torch.tensor([1, 2])},
            {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([2])}]


def test_roi_heads_swap_leaves_the_other_losses_identical():
    torch.manual_seed(3)
    images = [torch.rand(3, 64, 80), torch.rand(3, 56, 72)]
    targets = _targets()
    torch.manual_seed(0)
    ours = create_instance_model("maskrcnn_tiny", 2, min_size=64, max_size=96)
    torch.manual_seed(0)
    plain = INSTANCE_MODELS["maskrcnn_tiny"](3, min_size=64, max_size=96)  # torchvision's own heads
    assert type(plain.roi_heads).__name__ == "RoIHeads" and isinstance(ours.roi_heads, BoxSupervisedRoIHeads)
    for a, b in zip(ours.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with_masks = [{**t, "masks": filled_box_masks(t["boxes"], *im.shape[-2:]).to(torch.uint8)}
                  for t, im in zip(targets, images, strict=True)]
    ours.train()
    plain.train()
    torch.manual_seed(7)
    la = ours(images, targets)
    torch.manual_seed(7)
    lb = plain(images, with_masks)
    assert set(la) == set(lb)
    for k in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"):
        assert torch.equal(la[k], lb[k]), k
    assert not torch.equal(la["loss_mask"], lb["loss_mask"])  # the mask loss is ours, not BCE on mask labels
    ours.eval()
    plain.eval()
    with torch.no_grad():  # inference is torchvision's, unchanged
        pa, pb = ours(images), plain(images)
    for x, y in zip(pa, pb, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in ("boxes", "scores", "labels", "masks"))


def test_mask_loss_gradient_reaches_the_mask_branch_only():
    model = create_instance_model("maskrcnn_tiny", 2, min_size=64, max_size=96)
    model.train()
    losses = model([torch.rand(3, 64, 80), torch.rand(3, 56, 72)], _targets())
    losses["loss_mask"].backward()

    def grad_sum(module):
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    heads = model.roi_heads
    assert grad_sum(heads.mask_predictor) > 0 and grad_sum(heads.mask_head) > 0
    assert grad_sum(heads.box_predictor) == 0 and grad_sum(heads.box_head) == 0 and grad_sum(model.rpn) == 0


def test_training_needs_no_mask_labels():
    model = create_instance_model("maskrcnn_tiny", 2, min_size=64, max_size=96)
    model.train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 56, 72)]
    losses = model(images, _targets())  # boxes and labels only
    assert torch.isfinite(losses["loss_mask"]) and float(losses["loss_mask"].detach()) > 0
    plain = INSTANCE_MODELS["maskrcnn_tiny"](3, min_size=64, max_size=96)
    plain.train()
    with pytest.raises(ValueError, match="masks"):  # torchvision's own heads need them
        plain(images, _targets())


def test_predict_instances_and_filled_boxes():
    model = create_instance_model("maskrcnn_tiny", 2, min_size=64, max_size=96)
    model.train()
    pred = predict_instances(model, torch.rand(3, 48, 60))
    assert model.training  # mode restored
    n = pred.boxes.shape[0]
    assert pred.masks.shape == (n, 48, 60) and pred.masks.dtype == torch.bool
    assert pred.labels.shape == (n,) and pred.scores.shape == (n,)
    box = filled_box_masks(torch.tensor([[1.0, 2.0, 4.0, 3.0]]), 5, 6)[0]
    assert box.sum() == 3 and bool(box[2, 1:4].all())
    with pytest.raises(ValueError, match="image"):
        predict_instances(model, torch.rand(1, 48, 60))


def test_resnet_models_build_without_downloads(tmp_path):
    for name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"):
        model = create_instance_model(name, 1, min_size=64, max_size=64)
        assert isinstance(model.roi_heads, BoxSupervisedRoIHeads)
        assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 2
        model.train()  # one box-supervised step through the real backbone and heads
        losses = model([torch.rand(3, 64, 80)], [{"boxes": torch.tensor([[10.0, 8.0, 50.0, 60.0]]),
                                                  "labels": torch.tensor([1])}])
        sum(losses.values()).backward()
        assert all(torch.isfinite(v) for v in losses.values())
        assert float(model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum()) > 0
    # a local backbone file: loaded with weights_only, set up as torchvision sets up pretrained ResNets
    from torchvision.models import resnet50

    weights = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), weights)
    model = create_instance_model("maskrcnn_resnet50_fpn", 1, backbone_weights=weights, min_size=64, max_size=64)
    body = model.backbone.body
    assert not body.conv1.weight.requires_grad and body.layer4[0].conv1.weight.requires_grad
    assert type(body.bn1).__name__ == "FrozenBatchNorm2d"


def test_bad_model_inputs_give_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model must be one of .*maskrcnn_tiny.*got 'resnet9000'"):
        create_instance_model("resnet9000", 1)
    with pytest.raises(FileNotFoundError, match="backbone_weights file not found"):
        create_instance_model("maskrcnn_resnet50_fpn", 1, backbone_weights=tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="not a ResNet-50 state_dict"):
        create_instance_model("maskrcnn_resnet50_fpn", 1, backbone_weights=bad, min_size=64, max_size=64)
    with pytest.raises(TypeError, match="unknown option"):
        create_instance_model("maskrcnn_tiny", 1, mask_loss_options={"zeta": 1.0})
    model = create_instance_model("maskrcnn_tiny", 1, min_size=64, max_size=64)
    model.train()
    with pytest.raises(ValueError, match=r"targets\[0\] has no 'labels'"):
        model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]])}])


def test_context_lets_the_background_around_the_roi_correct_a_filled_mask():
    """A disc inside its box on a flat background: with context the filled box costs more than the
    disc (background flows in from around the RoI); without it, the filled box is its own target."""
    m, h, w = 28, 96, 96
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    disc = (yy - 48) ** 2 + (xx - 48) ** 2 <= 20**2
    guide = torch.where(disc, 0.9, 0.1).expand(3, h, w).clone()
    box = torch.tensor([[28.0, 28.0, 68.0, 68.0]])
    target = {"boxes": box, "labels": torch.tensor([1]), "guide": guide}
    cy, cx = torch.meshgrid((torch.arange(m) + 0.5) / m * 40 + 28, (torch.arange(m) + 0.5) / m * 40 + 28,
                            indexing="ij")
    disc_roi = (cy - 48) ** 2 + (cx - 48) ** 2 <= 20**2
    filled = torch.full((1, 2, m, m), 20.0)
    exact = torch.where(disc_roi, 20.0, -20.0).expand(1, 2, m, m).clone()

    def loss(context, logits):
        heads = create_instance_model("maskrcnn_tiny", 1, min_size=64, max_size=96,
                                      mask_loss_options={"context": context, "zeta_g": 0.1}).roi_heads
        value = heads.box_mask_loss(logits, [box], [torch.tensor([0])], [target])
        return float(value), heads.last_mask_terms

    no_context, terms = loss(1.0, filled)
    assert terms["global"] < 1e-6 and terms["local"] < 1e-6  # the degenerate fixed point
    with_context_filled, _ = loss(2.0, filled)
    with_context_exact, _ = loss(2.0, exact)
    assert with_context_exact < with_context_filled - 0.1
    with pytest.raises(ValueError, match="context"):
        create_instance_model("maskrcnn_tiny", 1, mask_loss_options={"context": 0.5})


def test_half_precision_inputs_are_accepted():
    """Under AMP the mask logits (and possibly the guide) arrive in float16: the loss runs in float32."""
    images, boxes = _box_scene()
    logits = torch.randn(3, 1, 16, 16).half().requires_grad_(True)
    terms = box_supervised_mask_loss(logits, images.half(), boxes)
    terms["loss"].backward()
    assert terms["loss"].dtype == torch.float32 and logits.grad.dtype == torch.float16
    crop = roi_crops(torch.rand(3, 20, 30).half(), torch.tensor([[2.0, 3.0, 12.0, 18.0]]), 7)
    assert crop.dtype == torch.float32
