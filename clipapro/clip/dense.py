"""Training-free dense CLIP features: MaskCLIP and its successors, as one switch (``dense_mode``).

CLIP trains only its pooled (class-token / attention-pool) output against text. MaskCLIP (Zhou et al.,
ECCV 2022, "Extract Free Dense Labels from CLIP") observed that the *value* path of the last block,
mapped through the output projection, ``ln_post`` and ``proj``, lands each patch token in the joint
space. Later work changes only the last block:

==========  =====================================================  ========  =====  ===========
mode        last-block attention (per head, scale = d^-1/2)        residual  MLP    logit scale
==========  =====================================================  ========  =====  ===========
maskclip    none: each token keeps its own value (MaskCLIP)          yes       yes    100
clearclip   softmax(q q^T) (ClearCLIP, Lan et al. ECCV 2024)         no        no     50
sclip       softmax(q q^T) + softmax(k k^T) (SCLIP, Wang et al.      yes       yes    40
            ECCV 2024, "correlative self-attention")
naclip      softmax(k k^T + G), G a Gaussian over patch-grid          no        no     40
            distance, std 5 patches (NACLIP, Hajimiri et al. WACV 2025)
vanilla     softmax(q k^T): CLIP's own last block (reference)          yes       yes    100
==========  =====================================================  ========  =====  ===========

The residual/MLP column is each method's choice (MaskCLIP's ViT code keeps both; ClearCLIP and
NACLIP's "reduced" architecture drop both; SCLIP's public code keeps both) and can be overridden with
``residual=`` / ``mlp=``. The logit scales are the class defaults of the methods' segmentors
(ClearCLIP ``logit_scale=50``, SCLIP and NACLIP ``logit_scale=40``); SCLIP's configs override it per
benchmark (65 on VOC21, 50 on Context60 and COCO-Object), which its presets carry
(:mod:`clipapro.protocols`). MaskCLIP multiplies by 100 for its key smoothing and prompt denoising;
its mmsegmentation pipeline then softmaxes the raw cosines (scale 1, its presets).
The class token takes part in attention, the NACLIP prior ``G`` is zero on its row and column.

ResNet CLIP (attention pool): MaskCLIP applies the pool's value and output projections as 1x1
convolutions to the last feature map (no positional embedding, no query-key attention); only
``maskclip`` exists for ResNets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clipapro.clip.towers import ResNetTower, ViTTower

__all__ = ["DENSE_MODES", "POS_EMBED_RULES", "gaussian_prior", "interpolate_pos_embed", "resnet_dense", "vit_dense"]

DENSE_MODES = {
    "maskclip": {"attention": "value", "residual": True, "mlp": True, "logit_scale": 100.0},
    "clearclip": {"attention": "qq", "residual": False, "mlp": False, "logit_scale": 50.0},
    "sclip": {"attention": "csa", "residual": True, "mlp": True, "logit_scale": 40.0},
    "naclip": {"attention": "naclip", "residual": False, "mlp": False, "logit_scale": 40.0},
    "vanilla": {"attention": "qk", "residual": True, "mlp": True, "logit_scale": 100.0},
}


#: How a ViT's (1 + G*G, C) positional table is resized to an (h, w) patch grid (bicubic, align_corners=False):
#: ``"size"``: ``F.interpolate(size=(h, w))``, source coordinate (i + 0.5) * G / h - 0.5; the table is kept
#: only for the G x G grid (clipapro's default; open_clip and transformers interpolate the same way).
#: ``"size-same-count"``: the same, but the table is kept whenever h * w == G * G (mmsegmentation's ViT,
#: MaskCLIP; for a non-square grid with G * G patches the square table is added unchanged).
#: ``"scale-plus-0.1"``: ``F.interpolate(scale_factor=((h + 0.1) / G, (w + 0.1) / G))``, source coordinate
#: (i + 0.5) * G / (h + 0.1) - 0.5, kept whenever h * w == G * G (the DINO recipe in the OpenAI-CLIP
#: forks of SCLIP ``clip/model.py``, NACLIP ``clip/model.py`` and ClearCLIP ``open_clip/transformer.py``).
POS_EMBED_RULES = ("size", "size-same-count", "scale-plus-0.1")


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], *, rule: str = "size") -> torch.Tensor:
    """Resize a ViT positional embedding (1 + G*G, C) to a (h, w) patch grid; returns (1 + h*w, C).

    Bicubic, ``align_corners=False``, class position kept; ``rule`` is one of :data:`POS_EMBED_RULES`.

    Example:
        >>> import torch
        >>> interpolate_pos_embed(torch.randn(1 + 14 * 14, 8), (21, 31), rule="scale-plus-0.1").shape
        torch.Size([652, 8])
    """
    if rule not in POS_EMBED_RULES:
        raise ValueError(f"pos_embed_rule must be one of {POS_EMBED_RULES}, got {rule!r}")
    cls_pos, patch_pos = pos_embed[:1], pos_embed[1:]
    side = math.isqrt(patch_pos.shape[0])
    if side * side != patch_pos.shape[0]:
        raise ValueError(f"positional embedding of {patch_pos.shape[0]} patches is not a square grid")
    h, w = (int(g) for g in grid)
    if (side, side) == (h, w) or (rule != "size" and h * w == side * side):
        return pos_embed
    dim = patch_pos.shape[1]
    img = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    if rule == "scale-plus-0.1":
        # the forks write the factor as (n + 0.1) / sqrt(N); the same double keeps the kernel's coordinates
        root = math.sqrt(patch_pos.shape[0])
        img = F.interpolate(img, scale_factor=((h + 0.1) / root, (w + 0.1) / root), mode="bicubic",
                            align_corners=False, recompute_scale_factor=False)
        if tuple(img.shape[-2:]) != (h, w):  # cannot happen for grids below 10^6 patches; checked anyway
            raise RuntimeError(f"scale-plus-0.1 resizing gave {tuple(img.shape[-2:])}, expected {(h, w)}")
    else:
        img = F.interpolate(img, size=(h, w), mode="bicubic", align_corners=False)
    patch_pos = img.permute(0, 2, 3, 1).reshape(-1, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=0)


def gaussian_prior(grid: tuple[int, int], std: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """NACLIP's neighbourhood prior: (1 + h*w, 1 + h*w), exp(-|p_i - p_j|^2 / (2 std^2)) between patches.

    Distances are in patches; the class-token row and column are zero.
    """
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    prior = torch.exp(-torch.cdist(pos, pos).square() / (2.0 * std * std))
    return F.pad(prior, (1, 0, 1, 0)).to(dtype)


def _tokens_before_last(tower: ViTTower, pixels: torch.Tensor,
                        pos_embed_rule: str = "size") -> tuple[torch.Tensor, tuple[int, int]]:
    """Run patch embedding, positional embedding and all blocks but the last; returns (B, 1 + h*w, C)."""
    x = tower.patch_embed(pixels.to(tower.patch_embed.weight.dtype))
    grid = (x.shape[2], x.shape[3])
    x = x.flatten(2).transpose(1, 2)
    cls = tower.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + interpolate_pos_embed(tower.pos_embed, grid, rule=pos_embed_rule).to(x.dtype)
    x = tower.ln_pre(x)
    for block in tower.blocks:
        x = block(x)
    return x, grid


def _last_attention(y, last, attention: str, grid, gaussian_std: float):
    """Attention output of the last block for normalised tokens y (B, L, C), before ``out_proj``."""
    b, n, c = y.shape
    heads = last.num_heads
    q, k, v = F.linear(y, last.qkv_weight.to(y.dtype),
                       None if last.qkv_bias is None else last.qkv_bias.to(y.dtype)).chunk(3, dim=-1)
    if attention == "value":
        return v, k
    split = [t.reshape(b, n, heads, c // heads).transpose(1, 2) for t in (q, k, v)]
    qh, kh, vh = split
    if attention == "qk":
        out = F.scaled_dot_product_attention(qh, kh, vh)
    elif attention == "qq":
        out = F.scaled_dot_product_attention(qh, qh, vh)
    elif attention == "csa":  # (softmax(qq) + softmax(kk)) v, one SDPA per term
        out = F.scaled_dot_product_attention(qh, qh, vh) + F.scaled_dot_product_attention(kh, kh, vh)
    elif attention == "naclip":
        prior = gaussian_prior(grid, gaussian_std, device=y.device, dtype=y.dtype)
        out = F.scaled_dot_product_attention(kh, kh, vh, attn_mask=prior)
    else:
        raise ValueError(f"unknown attention kind {attention!r}")
    return out.transpose(1, 2).reshape(b, n, c), k


def vit_dense(tower: ViTTower, pixels: torch.Tensor, *, attention: str = "value", residual: bool = True,
              mlp: bool = True, gaussian_std: float = 5.0, return_keys: bool = False,
              pos_embed_rule: str = "size"):
    """Dense ViT embeddings (B, D, h, w), not normalised, from normalised pixels (B, 3, H, W).

    H and W must be multiples of the patch size (``predict`` pads or cuts). With ``return_keys`` also
    returns the last block's keys (B, C, h, w) (MaskCLIP's key smoothing uses them).
    ``pos_embed_rule``: one of :data:`POS_EMBED_RULES`.

    Example:
        >>> import open_clip, torch
        >>> from clipapro.clip.towers import open_clip_vit_tower
        >>> m = open_clip.model.CLIP(16, {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2,
        ...     "head_width": 16}, {"width": 32, "heads": 2, "layers": 1})
        >>> vit_dense(open_clip_vit_tower(m.visual), torch.randn(1, 3, 48, 32)).shape
        torch.Size([1, 16, 6, 4])
    """
    x, grid = _tokens_before_last(tower, pixels, pos_embed_rule)
    last = tower.last
    attn, keys = _last_attention(last.ln_1(x), last, attention, grid, gaussian_std)
    out = last.ls_1(last.out_proj(attn))
    if residual:
        out = x + out
    if mlp:
        out = out + last.ls_2(last.mlp(last.ln_2(out)))
    feats = tower.ln_post(out[:, 1:]) @ tower.proj.to(out.dtype)
    b = feats.shape[0]
    feats = feats.transpose(1, 2).reshape(b, -1, *grid)
    if return_keys:
        return feats, keys[:, 1:].transpose(1, 2).reshape(b, -1, *grid)
    return feats


def resnet_dense(tower: ResNetTower, pixels: torch.Tensor, *, return_keys: bool = False):
    """Dense ResNet-CLIP embeddings (B, D, H/32, W/32): value then output projection as 1x1 convs."""
    fmap = tower.trunk(pixels.to(tower.v_proj.weight.dtype))
    x = fmap.permute(0, 2, 3, 1)
    feats = tower.c_proj(tower.v_proj(x)).permute(0, 3, 1, 2)
    if return_keys:
        return feats, tower.k_proj(x).permute(0, 3, 1, 2)
    return feats
