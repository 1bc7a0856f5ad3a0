"""One view of a CLIP image tower, whatever library built it.

The dense paths in :mod:`clipapro.clip.dense` are written once against these small records; the
functions here fill them from an open_clip model or a transformers ``CLIPModel``. Nothing is copied:
the records hold the backend's own modules and parameters (the fused q/k/v matrix of transformers
is concatenated on the fly, which is exact).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LastBlock", "ResNetTower", "ViTTower", "hf_vit_tower", "open_clip_resnet_tower",
           "open_clip_vit_tower"]


@dataclass
class LastBlock:
    """The last residual attention block: pre-norm, fused q/k/v projection (3C, C), output projection, MLP."""

    ln_1: Callable
    qkv_weight: torch.Tensor
    qkv_bias: torch.Tensor | None
    out_proj: nn.Linear
    ls_1: Callable
    ln_2: Callable
    mlp: Callable
    ls_2: Callable
    num_heads: int


@dataclass
class ViTTower:
    """A CLIP ViT image tower: patch embedding, class token, positional embedding (1 + G*G, C), blocks."""

    patch_embed: nn.Conv2d
    class_embedding: torch.Tensor
    pos_embed: torch.Tensor
    ln_pre: Callable
    blocks: Sequence[Callable]  # all blocks but the last, each (B, L, C) -> (B, L, C)
    last: LastBlock
    ln_post: Callable
    proj: torch.Tensor  # (C, D)

    @property
    def patch_size(self) -> int:
        return int(self.patch_embed.kernel_size[0])


@dataclass
class ResNetTower:
    """A CLIP ModifiedResNet: trunk (B, 3, H, W) -> (B, C, H/32, W/32) and the attention pool."""

    trunk: Callable
    k_proj: nn.Linear
    v_proj: nn.Linear
    c_proj: nn.Linear

    patch_size: int = 32


def open_clip_vit_tower(visual) -> ViTTower:
    """View of an open_clip ``VisionTransformer``."""
    from open_clip.transformer import ResidualAttentionBlock

    blocks = list(visual.transformer.resblocks)
    last = blocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or getattr(visual, "attn_pool", None) is not None:
        raise ValueError("dense prediction supports open_clip ViTs with standard blocks "
                         "and token pooling only")
    if hasattr(last, "ln_1_kv"):
        raise ValueError("cross-attention blocks are not supported for dense prediction")
    attn = last.attn
    if not attn.batch_first:
        raise ValueError("open_clip ViT with batch_first=False is not supported")

    def run_block(block):
        return lambda x: block(x)

    return ViTTower(
        patch_embed=visual.conv1, class_embedding=visual.class_embedding,
        pos_embed=visual.positional_embedding, ln_pre=visual.ln_pre,
        blocks=[run_block(b) for b in blocks[:-1]],
        last=LastBlock(ln_1=last.ln_1, qkv_weight=attn.in_proj_weight, qkv_bias=attn.in_proj_bias,
                       out_proj=attn.out_proj, ls_1=last.ls_1, ln_2=last.ln_2, mlp=last.mlp,
                       ls_2=last.ls_2, num_heads=attn.num_heads),
        ln_post=visual.ln_post, proj=visual.proj,
    )


def hf_vit_tower(model) -> ViTTower:
    """View of a transformers ``CLIPModel`` image tower (``vision_model`` + ``visual_projection``)."""
    vm = model.vision_model
    layers = list(vm.encoder.layers)
    last = layers[-1]
    sa = last.self_attn
    qkv_w = torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight], dim=0)
    qkv_b = None
    if sa.q_proj.bias is not None:
        qkv_b = torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias], dim=0)

    def run_layer(layer):
        return lambda x: layer(x, None)

    identity = nn.Identity()
    return ViTTower(
        patch_embed=vm.embeddings.patch_embedding, class_embedding=vm.embeddings.class_embedding,
        pos_embed=vm.embeddings.position_embedding.weight, ln_pre=vm.pre_layrnorm,
        blocks=[run_layer(layer) for layer in layers[:-1]],
        last=LastBlock(ln_1=last.layer_norm1, qkv_weight=qkv_w, qkv_bias=qkv_b, out_proj=sa.out_proj,
                       ls_1=identity, ln_2=last.layer_norm2, mlp=last.mlp, ls_2=identity,
                       num_heads=sa.num_heads),
        ln_post=vm.post_layernorm, proj=model.visual_projection.weight.t(),
    )


def open_clip_resnet_tower(visual) -> ResNetTower:
    """View of an open_clip ``ModifiedResNet`` (attention-pool CLIP: RN50, RN101, RN50x4, ...)."""

    def trunk(x):
        x = visual.stem(x)
        return visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))

    pool = visual.attnpool
    return ResNetTower(trunk=trunk, k_proj=pool.k_proj, v_proj=pool.v_proj, c_proj=pool.c_proj)
