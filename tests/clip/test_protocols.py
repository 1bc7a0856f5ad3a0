"""Protocol presets: every file against the schema, every quirk by hand, every preset end to end against an
independent re-statement of its repository's pipeline on a tiny random ViT (no upstream code needed)."""

import copy
import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipapro.clip import create_model, predict_probs
from clipapro.clip.dense import interpolate_pos_embed
from clipapro.clip.predict import mmcv_rescale, rescale_size
from clipapro.clip.text import TextClassifier
from clipapro.prompts import ClassSet, get_class_set, get_templates
from clipapro.protocols import get_protocol, list_protocols, register_protocol, validate_protocol
from tests.clip.conftest import TEXT_CFG, perturb_

PRESETS = list_protocols()
# patch 16 as in ViT-B/16, a 4 x 4 positional table; QuickGELU as OpenAI's weights
TINY16 = {"embed_dim": 16, "quick_gelu": True, "text_cfg": TEXT_CFG,
          "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 32, "layers": 2, "head_width": 16}}


@pytest.fixture(scope="module")
def vit16():
    torch.manual_seed(3)
    m = create_model("tiny-vit16", model_cfg=copy.deepcopy(TINY16), random_init=True)
    perturb_(m.clip, 3)
    return m


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (6, 9, 3)).astype(np.float32)
    img = cv2.resize(base, (75, 50), interpolation=cv2.INTER_CUBIC)  # smooth, non-square, not a multiple of 16
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _classifier(model, proto, seed=0, max_classes=None):
    """Random text embeddings for the preset's class file (its first ``max_classes`` classes: the
    quirks do not depend on how many there are, the run time does)."""
    cs = get_class_set(proto.classes)
    if max_classes is not None:
        cs = ClassSet(cs.name, cs.names[:max_classes], cs.prompts[:max_classes])
    index = torch.tensor([k for k, names in enumerate(cs.prompts) for _ in names])
    w = torch.randn(len(index), model.embed_dim, generator=torch.Generator().manual_seed(seed))
    return TextClassifier(cs, get_templates(proto.templates), F.normalize(w, dim=-1), index)


# -- the files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_preset_file_is_valid(name):
    p = get_protocol(name)
    validate_protocol(json.loads(json.dumps(p.data)))
    assert p.name == name and name.startswith(p.method)
    if p.dataset is not None:
        assert name == f"{p.method}-{p.dataset}"
        cs, bench = get_class_set(p.classes), get_class_set(p.dataset)
        assert cs.names == bench.names  # benchmark names and order; the prompts are the method's own
        assert p.classes == f"{p.method}_{p.dataset}"
        assert p.reported["mIoU"] is not None and p.reported["source"]
    opts = p.predict_options()
    assert "rescale" in opts and opts["pixel_mean"] and opts["activation"] in ("gelu", "quick_gelu")


def test_method_settings_read_from_the_configs():
    sclip = {d: get_protocol(f"sclip-{d}").predict_options() for d in ("voc21", "context60", "voc20")}
    assert [sclip[d]["logit_scale"] for d in ("voc21", "context60", "voc20")] == [65, 50, 40]
    assert sclip["voc21"]["area_threshold"] == 0.1 and "area_threshold" not in sclip["voc20"]
    clear = {d: get_protocol(f"clearclip-{d}").predict_options().get("bg_threshold")
             for d in ("voc21", "context60", "voc20")}
    assert clear == {"voc21": 0.5, "context60": 0.15, "voc20": None}
    assert get_class_set("clearclip_voc21").prompts[0] == ("background",)
    assert get_protocol("naclip-voc21").predict_options()["slide_crop"] == 0  # whole image, not 224/112
    assert get_protocol("naclip-context60").predict_options()["slide_crop"] == 224
    assert get_protocol("naclip-voc21").refine == {"method": "pamr", "on": "cosine", "steps": 10,
                                                     "dilations": [8, 16]}
    mc = get_protocol("maskclip-context59").predict_options()
    assert (mc["activation"], mc["ln_eps"], mc["remainder"], mc["rescale"]) == ("gelu", 1e-6, "pad-corner",
                                                                              (520, 520))


def test_naclip_class_names_differ_from_ours_in_six_classes():
    ours, theirs = get_class_set("voc21"), get_class_set("naclip_voc21")
    differ = [n for n, a, b in zip(ours.names, ours.prompts, theirs.prompts, strict=True) if a != b]
    assert differ == ["aeroplane", "boat", "diningtable", "motorbike", "pottedplant", "tvmonitor"]
    assert get_class_set("sclip_voc21").prompts == theirs.prompts


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("reported"), "missing fields"),
    (lambda d: d.update(extra=1), "unknown fields"),
    (lambda d: d["predict"].update(no_such_option=1), "no_such_option"),
    (lambda d: d["predict"].update(pos_embed_rule="nearest"), "pos_embed_rule"),
    (lambda d: d["predict"].update(rescale=[2048]), "rescale"),
    (lambda d: d["predict"].update(logit_scale="40"), "logit_scale"),
    (lambda d: d["predict"].pop("pixel_std"), "go together"),
    (lambda d: d.update(refine={"method": "crf", "on": "cosine", "steps": 1, "dilations": [1]}), "pamr"),
    (lambda d: d["reported"].update(mIoU=640.7), "reported"),
    (lambda d: d["text"].update(classes="no_such_classes"), "no_such_classes"),
    (lambda d: d["model"].update(precision="fp8"), "precision"),
])
def test_schema_rejects_bad_presets(edit, match):
    data = copy.deepcopy(get_protocol("naclip-voc21").data)
    edit(data)
    with pytest.raises(ValueError, match=match):
        validate_protocol(data)


def test_unknown_preset_names_close_ones():
    with pytest.raises(ValueError, match="naclip-voc21"):
        get_protocol("naclip-voc2l")


# -- each quirk by hand --------------------------------------------------------------------------------
@pytest.mark.parametrize("grid", [(21, 31), (28, 28), (3, 5)])
def test_pos_embed_scale_plus_tenth_maps_by_g_over_n_plus_tenth(grid):
    g, dim = 14, 6
    table = torch.randn(1 + g * g, dim)
    out = interpolate_pos_embed(table, grid, rule="scale-plus-0.1")
    img = table[1:].reshape(1, g, g, dim).permute(0, 3, 1, 2)
    ref = F.interpolate(img, scale_factor=((grid[0] + 0.1) / g, (grid[1] + 0.1) / g), mode="bicubic",
                        align_corners=False, recompute_scale_factor=False)
    torch.testing.assert_close(out[1:], ref.permute(0, 2, 3, 1).reshape(-1, dim), rtol=0, atol=0)
    torch.testing.assert_close(out[:1], table[:1])
    # by hand: cubic convolution (A = -0.75, borders clamped) at source row (i + 0.5) * G / (n + 0.1) - 0.5
    ramp = (torch.arange(g, dtype=torch.float32) ** 2).view(g, 1).expand(g, g).reshape(-1, 1)
    rows = interpolate_pos_embed(torch.cat([torch.zeros(1, 1), ramp]), grid, rule="scale-plus-0.1")[1:]
    torch.testing.assert_close(rows.view(*grid)[:, 0].double(), _bicubic_rows(g, grid[0], g / (grid[0] + 0.1)),
                               atol=1e-4, rtol=0)
    if grid != (g, g):  # clipapro's own rule maps by G / n
        rows = interpolate_pos_embed(torch.cat([torch.zeros(1, 1), ramp]), grid, rule="size")[1:]
        torch.testing.assert_close(rows.view(*grid)[:, 0].double(), _bicubic_rows(g, grid[0], g / grid[0]),
                                   atol=1e-4, rtol=0)


def _bicubic_rows(g, n, step):
    """Bicubic resampling of f(k) = k^2 (k = 0..g-1) at rows (i + 0.5) * step - 0.5, i = 0..n-1."""
    a = -0.75

    def weight(t):
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return (((t - 5) * t + 8) * t - 4) * a if t < 2 else 0.0

    out = []
    for i in range(n):
        src = (i + 0.5) * step - 0.5
        base = math.floor(src)
        out.append(sum(weight(src - (base + k)) * min(max(base + k, 0), g - 1) ** 2 for k in (-1, 0, 1, 2)))
    return torch.tensor(out, dtype=torch.float64)


def test_pos_embed_table_kept_when_the_patch_count_matches():
    table = torch.randn(1 + 16, 5)
    for rule in ("scale-plus-0.1", "size-same-count"):
        assert interpolate_pos_embed(table, (2, 8), rule=rule) is table  # the forks add the 4x4 table as is
    assert interpolate_pos_embed(table, (2, 8), rule="size").shape == (17, 5)
    assert not torch.equal(interpolate_pos_embed(table, (2, 8), rule="size"), table)
    with pytest.raises(ValueError, match="pos_embed_rule"):
        interpolate_pos_embed(table, (3, 3), rule="area")


def test_remainder_rules(vit16):
    x = torch.rand(1, 3, 40, 59)
    norm = vit16.normalize(x)
    cut = vit16.encode_dense(x, dense_mode="naclip", remainder="cut")
    torch.testing.assert_close(cut, vit16.encode_dense(norm[..., :32, :48], normalized=True, dense_mode="naclip"))
    assert cut.shape[-2:] == (2, 3)
    corner = vit16.encode_dense(x, remainder="pad-corner")
    torch.testing.assert_close(corner, vit16.encode_dense(F.pad(norm, (0, 5, 0, 8)), normalized=True))
    even = vit16.encode_dense(x, remainder="pad-even")
    torch.testing.assert_close(even, vit16.encode_dense(F.pad(norm, (2, 3, 4, 4)), normalized=True))
    with pytest.raises(ValueError, match="no whole 16x16 patch"):
        vit16.encode_dense(torch.rand(1, 3, 12, 40), remainder="cut")


def test_mmcv_rescale_rule_and_opencv_resize():
    assert rescale_size(375, 500, (2048, 336)) == (336, 448)
    assert rescale_size(500, 333, (2048, 336)) == (505, 336)  # int(333 * 336/333 + .5), int(500 * 1.009 + .5)
    assert rescale_size(240, 350, (520, 520)) == (357, 520)  # (520, 520) bounds the long side
    assert rescale_size(1024, 2048, (1024, 512)) == (512, 1024)
    img = np.random.default_rng(0).integers(0, 256, (50, 75, 3), dtype=np.uint8)
    levels = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    out = mmcv_rescale(levels, (2048, 336))
    want = cv2.resize(img, (504, 336), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(out[0].permute(1, 2, 0).to(torch.uint8), torch.from_numpy(want))


def test_vision_numerics_switch_and_restore(vit16):
    x = torch.rand(1, 3, 32, 32)
    base = vit16.encode_dense(x, dense_mode="maskclip")
    with vit16.vision_numerics(activation="gelu", ln_eps=1e-6):
        assert vit16.vision_activation == "gelu"
        assert all(m.eps == 1e-6 for m in vit16.clip.visual.modules() if isinstance(m, torch.nn.LayerNorm))
        switched = vit16.encode_dense(x, dense_mode="maskclip")
    assert vit16.vision_activation == "quick_gelu"
    assert all(m.eps == 1e-5 for m in vit16.clip.visual.modules() if isinstance(m, torch.nn.LayerNorm))
    assert (switched - base).abs().max() > 1e-4
    torch.testing.assert_close(vit16.encode_dense(x, dense_mode="maskclip"), base, rtol=0, atol=0)
    with pytest.raises(ValueError, match="activation"):
        with vit16.vision_numerics(activation="relu"):
            pass


def test_explicit_options_override_the_preset(vit16, photo):
    proto = get_protocol("sclip-voc20")
    clf = _classifier(vit16, proto)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    preset = predict_probs(vit16, x, clf, protocol=proto)
    other = predict_probs(vit16, x, clf, protocol=proto, logit_scale=10.0)
    spelled = predict_probs(vit16, x, clf, **{**proto.predict_options(), "logit_scale": 10.0})
    torch.testing.assert_close(other, spelled, rtol=0, atol=0)
    assert (other - preset).abs().max() > 1e-3
    # an explicit short side replaces the preset's mmcv rescale; an explicit window its stride
    predict_probs(vit16, x, clf, protocol=proto, short_side=64, slide_crop=32)
    with pytest.raises(ValueError, match="gaps"):
        predict_probs(vit16, x, clf, protocol=proto, slide_crop=32, slide_stride=48)


def test_register_protocol_and_classifier_from_the_preset(vit16, photo):
    data = copy.deepcopy(get_protocol("clearclip-voc20").data)
    data["name"] = "test-clearclip-single"
    data["text"]["templates"] = "single"
    register_protocol(data)
    assert "test-clearclip-single" in list_protocols()
    x = torch.from_numpy(photo[:20, :30]).permute(2, 0, 1)[None].float() / 255
    probs = predict_probs(vit16, x, None, protocol=get_protocol("test-clearclip-single"))
    with pytest.raises(TypeError, match="get_protocol"):
        predict_probs(vit16, x, None, protocol="test-clearclip-single")
    assert probs.shape == (1, 20, 20, 30)


# -- every preset end to end, against its repository's pipeline restated from its code ------------------
def _vit_tokens(model, pixels, o):
    """The preset's ViT by hand from the open_clip weights: (B, 1 + h*w, D) before normalisation."""
    v = model.clip.visual
    eps = o["ln_eps"]
    act = F.gelu if o["activation"] == "gelu" else (lambda t: t * torch.sigmoid(1.702 * t))

    def ln(mod, t):
        return F.layer_norm(t, mod.normalized_shape, mod.weight, mod.bias, eps)

    x = F.conv2d(pixels, v.conv1.weight, stride=16)
    h, w = x.shape[-2:]
    x = torch.cat([v.class_embedding.view(1, 1, -1), x.flatten(2).transpose(1, 2)], 1)
    pe, g = v.positional_embedding, 4
    if h * w != g * g:
        grid = pe[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        if o["pos_embed_rule"] == "scale-plus-0.1":
            grid = F.interpolate(grid, scale_factor=((h + 0.1) / math.sqrt(16), (w + 0.1) / math.sqrt(16)),
                                 mode="bicubic", align_corners=False)
        else:
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        pe = torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1)])
    x = ln(v.ln_pre, x + pe)
    blocks = list(v.transformer.resblocks)

    def attn(blk, t, kind):
        a = blk.attn
        q, k, val = F.linear(t, a.in_proj_weight, a.in_proj_bias).chunk(3, -1)
        nh, n = a.num_heads, t.shape[1]
        q, k, val = (z.reshape(1, n, nh, -1).transpose(1, 2) for z in (q, k, val))
        s = q.shape[-1] ** -0.5
        if kind == "vanilla":
            wts = (q @ k.transpose(-1, -2) * s).softmax(-1)
        elif kind == "qq":
            wts = (q @ q.transpose(-1, -2) * s).softmax(-1)
        elif kind == "csa":
            wts = (q @ q.transpose(-1, -2) * s).softmax(-1) + (k @ k.transpose(-1, -2) * s).softmax(-1)
        elif kind == "naclip":
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            pos = torch.stack([ys.flatten(), xs.flatten()], 1).float()
            d2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
            prior = F.pad(torch.exp(-d2 / (2 * 5.0 ** 2)), (1, 0, 1, 0))
            wts = (k @ k.transpose(-1, -2) * s + prior).softmax(-1)
        else:  # MaskCLIP: each token keeps its own value
            wts = torch.eye(n).expand(1, nh, n, n)
        out = (wts @ val).transpose(1, 2).reshape(1, n, -1)
        return F.linear(out, a.out_proj.weight, a.out_proj.bias)

    def mlp(blk, t):
        return F.linear(act(F.linear(t, blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)), blk.mlp.c_proj.weight,
                        blk.mlp.c_proj.bias)

    for blk in blocks[:-1]:
        x = x + attn(blk, ln(blk.ln_1, x), "vanilla")
        x = x + mlp(blk, ln(blk.ln_2, x))
    last = blocks[-1]
    kind = {"naclip": "naclip", "sclip": "csa", "clearclip": "qq", "maskclip": "value"}[o["dense_mode"]]
    y = attn(last, ln(last.ln_1, x), kind)
    if kind in ("csa", "value"):  # SCLIP and MaskCLIP keep the residual and the MLP
        y = x + y
        y = y + mlp(last, ln(last.ln_2, y))
    return ln(v.ln_post, y) @ v.proj, (h, w)


def _pamr(image, mask, steps, dilations):
    """PAMR as Araslanov & Roth's pamr.py computes it (shift kernels as 3x3 convolutions, replicate padding)."""
    def shifts(x, centre):
        b, c, hh, ww = x.shape
        outs = []
        for d in dilations:
            xp = F.pad(x.reshape(b * c, 1, hh, ww), [d] * 4, mode="replicate")
            for i in range(3):
                for j in range(3):
                    if (i, j) == (1, 1) and not centre:
                        continue
                    kern = torch.zeros(1, 1, 3, 3)
                    kern[0, 0, i, j] = 1.0
                    outs.append(F.conv2d(xp, kern, dilation=d))
        return torch.cat(outs, 1).view(b, c, -1, hh, ww)

    std = shifts(image, True).std(2, keepdim=True)
    aff = -(shifts(image, False) - image.unsqueeze(2)).abs() / (1e-8 + 0.1 * std)
    aff = aff.mean(1, keepdim=True).softmax(2)
    for _ in range(steps):
        mask = (shifts(mask, False) * aff).sum(2)
    return mask


def _reference(model, rgb, proto, clf):
    """The preset's repository pipeline, restated: mmcv resize, normalise, windows, remainder, cosines,
    upsampling, PAMR, softmax over names, max per class, area and probability thresholds."""
    o = proto.predict_options()
    h0, w0 = rgb.shape[:2]
    f = min(max(o["rescale"]) / max(h0, w0), min(o["rescale"]) / min(h0, w0))
    img = cv2.resize(rgb, (int(w0 * f + 0.5), int(h0 * f + 0.5)), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    x = (x - torch.tensor(o["pixel_mean"]).view(1, 3, 1, 1)) / torch.tensor(o["pixel_std"]).view(1, 3, 1, 1)
    text = clf.weights

    def window(crop):
        hh, ww = crop.shape[-2:]
        rule = o["remainder"]
        if rule == "cut":
            padded = crop
        elif rule == "pad-corner":
            padded = F.pad(crop, (0, -ww % 16, 0, -hh % 16))
        else:
            pw, ph = -ww % 16, -hh % 16
            padded = F.pad(crop, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        feats, (gh, gw) = _vit_tokens(model, padded, o)
        feats = F.normalize(feats[:, 1:], dim=-1)
        cos = (feats @ text.T).transpose(1, 2).reshape(1, -1, gh, gw)
        if rule == "pad-even":
            cos = F.interpolate(cos, size=padded.shape[-2:], mode="bilinear", align_corners=False)
            pw, ph = padded.shape[-1] - ww, padded.shape[-2] - hh
            return cos[:, :, ph // 2:ph // 2 + hh, pw // 2:pw // 2 + ww]
        return F.interpolate(cos, size=(hh, ww), mode="bilinear", align_corners=False)

    crop = o.get("slide_crop") or 0
    if crop:
        stride = o["slide_stride"]
        hi, wi = x.shape[-2:]
        preds = torch.zeros(1, text.shape[0], hi, wi)
        count = torch.zeros(1, 1, hi, wi)
        for yi in range(max(hi - crop + stride - 1, 0) // stride + 1):
            for xi in range(max(wi - crop + stride - 1, 0) // stride + 1):
                y2, x2 = min(yi * stride + crop, hi), min(xi * stride + crop, wi)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                preds[:, :, y1:y2, x1:x2] += window(x[:, :, y1:y2, x1:x2])
                count[:, :, y1:y2, x1:x2] += 1
        cos = preds / count
    else:
        cos = window(x)
    cos = F.interpolate(cos, size=(h0, w0), mode="bilinear", align_corners=False)
    if proto.refine is not None:
        guide = F.interpolate(x, size=(h0, w0), mode="bilinear", align_corners=False)
        cos = _pamr(guide, cos, proto.refine["steps"], proto.refine["dilations"])
    probs = (cos[0] * o["logit_scale"]).softmax(0)
    k = clf.num_classes
    probs = torch.stack([probs[clf.class_index == c].amax(0) for c in range(k)])  # max over a class's names
    if o.get("area_threshold") is not None:  # SCLIP's area_thd, background = class 0
        area = F.one_hot(probs.argmax(0), k)[:, :, 1:].sum((0, 1)).float()
        probs[1:] *= (area > o["area_threshold"] * area.sum()).float().view(-1, 1, 1)
    if o.get("bg_threshold") is not None:
        low = probs.amax(0) < o["bg_threshold"]
        probs[:, low] = 0.0
        probs[0, low] = 1.0
    return probs / probs.sum(0, keepdim=True)


@pytest.mark.parametrize("name", [n for n in PRESETS if get_protocol(n).dataset is not None])
def test_preset_equals_its_repository_pipeline(vit16, photo, name):
    proto = get_protocol(name)
    clf = _classifier(vit16, proto, max_classes=8)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ours = predict_probs(vit16, x, clf, protocol=get_protocol(name))[0]
        ref = _reference(vit16, photo, proto, clf)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)
    assert torch.equal(ours.argmax(0), ref.argmax(0))
