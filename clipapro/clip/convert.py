"""Convert CLIP ViT checkpoints between the open_clip and the transformers (``CLIPModel``) layouts.

Both libraries implement the same OpenAI CLIP network; only parameter names and the packing of the
attention projections differ (open_clip keeps q, k, v in one ``in_proj_weight`` (3C, C); transformers
has ``q_proj``, ``k_proj``, ``v_proj``; the output projections are stored transposed as
``nn.Linear`` weights in transformers). The conversion is exact (a relabelling and a split/concat),
so the same weights loaded in either backend give the same outputs.

Only the plain CLIP ViT family converts (what ``openai``-style checkpoints and most LAION/DataComp
ViT checkpoints use). Configs with layer scale, attentional pooling, no ``ln_pre``, a timm or HF
text tower, or a ResNet image tower raise ``ValueError``: transformers has no ``CLIPModel`` for them.

Example:
    >>> from clipapro.clip.convert import open_clip_config_to_hf, open_clip_to_hf_state_dict
    >>> cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32,
    ...        "layers": 2, "head_width": 16}, "text_cfg": {"width": 32, "heads": 2, "layers": 2}}
    >>> hf_config = open_clip_config_to_hf(cfg)
    >>> hf_config.vision_config.num_attention_heads
    2
"""

from __future__ import annotations

import re

import torch

__all__ = [
    "hf_config_to_open_clip", "hf_to_open_clip_state_dict", "open_clip_config_to_hf",
    "open_clip_to_hf_state_dict",
]

# open_clip suffix inside a residual block -> transformers suffix inside an encoder layer
_BLOCK_KEYS = {
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
# open_clip top-level key -> transformers key (matrices marked T are stored transposed)
_TOP_KEYS = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_TOWERS = {"visual.transformer.resblocks.": "vision_model.encoder.layers.",
           "transformer.resblocks.": "text_model.encoder.layers."}
_UNSUPPORTED_VISION = ("ls_init_value", "attentional_pool", "no_ln_pre", "timm_model_name",
                       "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn", "scale_fc",
                       "final_ln_after_pool")


def _check_convertible(cfg: dict) -> None:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if isinstance(vision.get("layers", 12), (list, tuple)):
        raise ValueError("ResNet CLIP models have no transformers CLIPModel equivalent; "
                         "use backend='open_clip'")
    bad = [k for k in _UNSUPPORTED_VISION if vision.get(k)]
    bad += [f"text_cfg.{k}" for k in ("hf_model_name", "ls_init_value", "embed_cls", "no_causal_mask")
            if text.get(k)]
    if vision.get("pool_type", "tok") != "tok" or text.get("pool_type", "argmax") != "argmax":
        bad.append("pool_type")
    if text.get("proj_bias") or cfg.get("custom_text"):
        bad.append("custom text tower")
    if bad:
        raise ValueError(f"open_clip config uses features transformers' CLIPModel lacks: {bad}")


def open_clip_config_to_hf(cfg: dict):
    """A ``transformers.CLIPConfig`` for an open_clip config (``embed_dim``, ``vision_cfg``, ``text_cfg``)."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    from transformers import CLIPConfig

    _check_convertible(cfg)
    v = CLIPVisionCfg(**cfg["vision_cfg"])
    t = CLIPTextCfg(**cfg["text_cfg"])
    act = "quick_gelu" if cfg.get("quick_gelu", False) else "gelu"
    image_size = v.image_size if isinstance(v.image_size, int) else v.image_size[0]
    vision = dict(hidden_size=v.width, num_hidden_layers=v.layers,
                  num_attention_heads=v.width // v.head_width, intermediate_size=int(v.width * v.mlp_ratio),
                  image_size=image_size, patch_size=v.patch_size, hidden_act=act,
                  layer_norm_eps=1e-5, projection_dim=cfg["embed_dim"])
    text = dict(hidden_size=t.width, num_hidden_layers=t.layers, num_attention_heads=t.heads,
                intermediate_size=int(t.width * t.mlp_ratio), vocab_size=t.vocab_size,
                max_position_embeddings=t.context_length, hidden_act=act, layer_norm_eps=1e-5,
                projection_dim=cfg["embed_dim"], bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg["embed_dim"])


def hf_config_to_open_clip(config) -> dict:
    """The open_clip config of a ``transformers.CLIPConfig`` (inverse of :func:`open_clip_config_to_hf`)."""
    v, t = config.vision_config, config.text_config
    if v.hidden_act != t.hidden_act or v.hidden_act not in ("gelu", "quick_gelu"):
        raise ValueError(f"unsupported activations for open_clip: vision {v.hidden_act}, text {t.hidden_act}")
    return {
        "embed_dim": config.projection_dim,
        "quick_gelu": v.hidden_act == "quick_gelu",
        "vision_cfg": {"image_size": v.image_size, "patch_size": v.patch_size, "width": v.hidden_size,
                       "layers": v.num_hidden_layers, "head_width": v.hidden_size // v.num_attention_heads,
                       "mlp_ratio": v.intermediate_size / v.hidden_size},
        "text_cfg": {"context_length": t.max_position_embeddings, "vocab_size": t.vocab_size,
                     "width": t.hidden_size, "heads": t.num_attention_heads, "layers": t.num_hidden_layers,
                     "mlp_ratio": t.intermediate_size / t.hidden_size},
    }


def open_clip_to_hf_state_dict(state_dict: dict) -> dict:
    """Relabel an open_clip CLIP ViT state dict to ``transformers.CLIPModel`` names (exact)."""
    out = {}
    for key, value in state_dict.items():
        if key == "attn_mask" or key.endswith(".attn_mask"):
            continue  # the causal mask is a buffer, rebuilt by both libraries
        if key in _TOP_KEYS:
            out[_TOP_KEYS[key]] = value
            continue
        if key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
            continue
        for src, dst in _TOWERS.items():
            m = re.fullmatch(re.escape(src) + r"(\d+)\.(.+)", key)
            if m:
                layer, rest = m.group(1), m.group(2)
                base = f"{dst}{layer}."
                if rest == "attn.in_proj_weight" or rest == "attn.in_proj_bias":
                    kind = rest.rsplit("_", 1)[1]
                    for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                        out[f"{base}self_attn.{name}_proj.{kind}"] = part.contiguous()
                elif rest in _BLOCK_KEYS:
                    out[base + _BLOCK_KEYS[rest]] = value
                else:
                    raise ValueError(f"cannot convert open_clip parameter {key!r} to transformers")
                break
        else:
            raise ValueError(f"cannot convert open_clip parameter {key!r} to transformers")
    return out


def hf_to_open_clip_state_dict(state_dict: dict) -> dict:
    """Relabel a ``transformers.CLIPModel`` state dict to open_clip names (inverse of the above)."""
    top = {v: k for k, v in _TOP_KEYS.items()}
    transposed = {v: k for k, v in _TRANSPOSED.items()}
    block = {v: k for k, v in _BLOCK_KEYS.items()}
    out, qkv = {}, {}
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        if key in top:
            out[top[key]] = value
            continue
        if key in transposed:
            out[transposed[key]] = value.t().contiguous()
            continue
        for src, dst in _TOWERS.items():
            m = re.fullmatch(re.escape(dst) + r"(\d+)\.(.+)", key)
            if m:
                base, rest = f"{src}{m.group(1)}.", m.group(2)
                pm = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
                if pm:
                    qkv.setdefault(base + "attn.in_proj_" + pm.group(2), {})[pm.group(1)] = value
                elif rest in block:
                    out[base + block[rest]] = value
                else:
                    raise ValueError(f"cannot convert transformers parameter {key!r} to open_clip")
                break
        else:
            raise ValueError(f"cannot convert transformers parameter {key!r} to open_clip")
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"incomplete attention projections for {key!r}: got {sorted(parts)}")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out
