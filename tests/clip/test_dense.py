"""Dense paths against hand computations from the blocks' own weights."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipapro.clip import DENSE_MODES
from clipapro.clip.dense import gaussian_prior, interpolate_pos_embed


def _hand_tokens(visual, pixels):
    """Embeddings + all blocks but the last, at the native 32x32 size (no interpolation)."""
    x = visual._embeds(pixels)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x


def _heads(t, n_heads):
    b, n, c = t.shape
    return t.reshape(b, n, n_heads, c // n_heads).transpose(1, 2)


def _hand_last_block(visual, x, mode):
    blk = visual.transformer.resblocks[-1]
    y = blk.ln_1(x)
    w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
    c = x.shape[-1]
    q, k, v = (y @ w[i * c:(i + 1) * c].T + b[i * c:(i + 1) * c] for i in range(3))
    heads = blk.attn.num_heads
    qh, kh, vh = (_heads(t, heads) for t in (q, k, v))
    scale = (c // heads) ** -0.5
    grid = int(math.isqrt(x.shape[1] - 1))

    def attend(a, bb, extra=0.0):
        att = torch.softmax(a @ bb.transpose(-1, -2) * scale + extra, dim=-1)
        return (att @ vh).transpose(1, 2).reshape(x.shape)

    if mode == "maskclip":
        o = v
    elif mode == "vanilla":
        o = attend(qh, kh)
    elif mode == "clearclip":
        o = attend(qh, qh)
    elif mode == "sclip":
        o = attend(qh, qh) + attend(kh, kh)
    else:  # naclip, prior built by brute force
        n = x.shape[1]
        prior = torch.zeros(n, n)
        for i in range(1, n):
            for j in range(1, n):
                (yi, xi), (yj, xj) = divmod(i - 1, grid), divmod(j - 1, grid)
                prior[i, j] = math.exp(-((yi - yj) ** 2 + (xi - xj) ** 2) / (2 * 5.0 ** 2))
        o = attend(kh, kh, prior)
    o = o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias
    cfg = DENSE_MODES[mode]
    out = x + o if cfg["residual"] else o
    if cfg["mlp"]:
        out = out + blk.mlp(blk.ln_2(out))
    feats = visual.ln_post(out[:, 1:]) @ visual.proj
    return F.normalize(feats, dim=-1).transpose(1, 2).reshape(x.shape[0], -1, grid, grid)


@pytest.mark.parametrize("mode", sorted(DENSE_MODES))
def test_vit_dense_equals_hand_computation(oc_vit, mode):
    img = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        pixels = oc_vit.normalize(img)
        expected = _hand_last_block(oc_vit.clip.visual, _hand_tokens(oc_vit.clip.visual, pixels), mode)
    got = oc_vit.encode_dense(img, dense_mode=mode)
    assert got.shape == (2, 16, 4, 4)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_vanilla_mode_equals_open_clip_tokens(oc_vit):
    """dense_mode='vanilla' is CLIP's own forward: open_clip's output tokens projected by proj."""
    visual = oc_vit.clip.visual
    img = torch.rand(1, 3, 32, 32)
    visual.output_tokens = True
    try:
        with torch.no_grad():
            _, tokens = visual(oc_vit.normalize(img))
    finally:
        visual.output_tokens = False
    expected = F.normalize(tokens @ visual.proj, dim=-1).transpose(1, 2).reshape(1, 16, 4, 4)
    torch.testing.assert_close(oc_vit.encode_dense(img, dense_mode="vanilla"), expected, atol=1e-5, rtol=1e-5)


def test_residual_and_mlp_switches(oc_vit):
    img = torch.rand(1, 3, 32, 32)
    base = oc_vit.encode_dense(img, dense_mode="maskclip")
    bare = oc_vit.encode_dense(img, dense_mode="maskclip", residual=False, mlp=False)
    assert not torch.allclose(base, bare, atol=1e-3)
    with torch.no_grad():
        visual = oc_vit.clip.visual
        x = _hand_tokens(visual, oc_vit.normalize(img))
        blk = visual.transformer.resblocks[-1]
        c = x.shape[-1]
        v = blk.ln_1(x) @ blk.attn.in_proj_weight[2 * c:].T + blk.attn.in_proj_bias[2 * c:]
        o = blk.attn.out_proj(v)
        expected = F.normalize(visual.ln_post(o[:, 1:]) @ visual.proj, dim=-1)
        expected = expected.transpose(1, 2).reshape(1, 16, 4, 4)
    torch.testing.assert_close(bare, expected, atol=1e-5, rtol=1e-5)


def test_resnet_dense_equals_value_and_output_projection(oc_rn):
    visual = oc_rn.clip.visual
    img = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        x = oc_rn.normalize(img)
        fmap = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
        pool = visual.attnpool
        v = F.conv2d(fmap, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
        out = F.conv2d(v, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)
    got = oc_rn.encode_dense(img)
    assert got.shape == (2, 16, 2, 3)
    torch.testing.assert_close(got, F.normalize(out, dim=1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="maskclip"):
        oc_rn.encode_dense(img, dense_mode="naclip")


@pytest.mark.parametrize("size", [(225, 333), (31, 9), (8, 8)])
def test_odd_sizes_pad_to_the_patch_grid(oc_vit, oc_rn, size):
    img = torch.rand(1, 3, *size)
    for mode in ("maskclip", "naclip"):
        out = oc_vit.encode_dense(img, dense_mode=mode)
        assert out.shape == (1, 16, math.ceil(size[0] / 8), math.ceil(size[1] / 8))
        torch.testing.assert_close(out.norm(dim=1), torch.ones(out.shape[0], *out.shape[2:]))
    assert oc_rn.encode_dense(img).shape == (1, 16, math.ceil(size[0] / 32), math.ceil(size[1] / 32))


def test_pos_embed_interpolation():
    pe = torch.randn(1 + 16, 8)
    assert interpolate_pos_embed(pe, (4, 4)) is pe
    big = interpolate_pos_embed(pe, (6, 3))
    assert big.shape == (19, 8) and torch.equal(big[0], pe[0])
    with pytest.raises(ValueError, match="square"):
        interpolate_pos_embed(torch.randn(1 + 15, 8), (3, 5))


def test_gaussian_prior_layout():
    p = gaussian_prior((2, 3), 1.0)
    assert p.shape == (7, 7)
    assert torch.all(p[0] == 0) and torch.all(p[:, 0] == 0)
    torch.testing.assert_close(p[1:, 1:].diagonal(), torch.ones(6))
    assert p[1, 2].item() == pytest.approx(math.exp(-0.5))  # horizontal neighbours, distance 1
    assert p[1, 4].item() == pytest.approx(math.exp(-0.5))  # vertical neighbours (next row of 3)


def test_batch_entries_are_independent(oc_vit):
    imgs = torch.rand(3, 3, 40, 24)
    together = oc_vit.encode_dense(imgs, dense_mode="sclip")
    alone = torch.cat([oc_vit.encode_dense(imgs[i:i + 1], dense_mode="sclip") for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_noncontiguous_input(oc_vit):
    imgs = torch.rand(1, 40, 32, 3).permute(0, 3, 1, 2)
    assert not imgs.is_contiguous()
    torch.testing.assert_close(oc_vit.encode_dense(imgs), oc_vit.encode_dense(imgs.contiguous()))


def test_bf16_precision_runs(oc_vit):
    import copy

    m = copy.deepcopy(oc_vit).to(torch.bfloat16)
    img = torch.rand(1, 3, 32, 32)
    out, ref = m.encode_dense(img), oc_vit.encode_dense(img)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out * ref).sum(dim=1).min() > 0.9  # same directions up to bf16 rounding
