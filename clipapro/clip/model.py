"""``DenseCLIP``: one ``nn.Module`` over an open_clip or transformers CLIP, with dense image features.

Built by :func:`clipapro.clip.create_model`; the dense maths lives in :mod:`clipapro.clip.dense`.
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from clipapro._validate import check_choice, check_tensor
from clipapro.clip.dense import DENSE_MODES, POS_EMBED_RULES, resnet_dense, vit_dense
from clipapro.clip.towers import hf_vit_tower, open_clip_resnet_tower, open_clip_vit_tower

__all__ = ["ACTIVATIONS", "REMAINDER_RULES", "DenseCLIP", "cut_to_multiple", "pad_to_multiple"]

#: What happens to image sides that are not multiples of the patch size (see ``DenseCLIP.encode_dense``).
REMAINDER_RULES = ("pad-even", "pad-corner", "cut")

#: Activations of the image tower's MLPs that :meth:`DenseCLIP.vision_numerics` can switch to.
ACTIVATIONS = ("gelu", "quick_gelu")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation OpenAI CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _activation_module(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else QuickGELU()


class DenseCLIP(nn.Module):
    """A CLIP model with dense outputs; wraps the backend model (``.clip``) without copying weights.

    Attributes: ``name``, ``pretrained`` (tag, path or None), ``backend`` ("open_clip" or
    "transformers"), ``arch`` ("vit" or "resnet"), ``patch_size`` (output stride: 16 for ViT-B/16,
    32 for ResNets), ``image_mean`` / ``image_std`` (RGB tuples), ``embed_dim``, ``weights_id``
    (identifies the weights for the text-classifier cache).

    Example:
        >>> import torch
        >>> from clipapro.clip import create_model
        >>> m = create_model("ViT-B-16", random_init=True)          # no download
        >>> m.encode_dense(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 512, 14, 14])
    """

    def __init__(self, clip: nn.Module, *, backend: str, name: str, pretrained=None, tokenizer=None,
                 image_mean=OPENAI_MEAN, image_std=OPENAI_STD, weights_id: str | None = None):
        super().__init__()
        self.clip = clip.eval()
        self.backend = check_choice(backend, "backend", ("open_clip", "transformers"))
        self.name = name
        self.pretrained = pretrained
        self.tokenizer = tokenizer
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        if backend == "transformers":
            self.arch = "vit"
        else:
            from open_clip.modified_resnet import ModifiedResNet
            from open_clip.transformer import VisionTransformer

            visual = clip.visual
            if isinstance(visual, ModifiedResNet):
                self.arch = "resnet"
            elif isinstance(visual, VisionTransformer):
                self.arch = "vit"
            else:
                raise ValueError(f"dense prediction needs a CLIP ViT or ModifiedResNet image tower, "
                                 f"got {type(visual).__name__}")
        tower = self._tower()
        self.patch_size = tower.patch_size
        self.embed_dim = int(tower.proj.shape[1]) if self.arch == "vit" else int(tower.c_proj.out_features)
        self._weights_id = weights_id

    # -- structure -----------------------------------------------------------------------------------
    def _tower(self):
        if self.backend == "transformers":
            return hf_vit_tower(self.clip)
        if self.arch == "resnet":
            return open_clip_resnet_tower(self.clip.visual)
        return open_clip_vit_tower(self.clip.visual)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.clip.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def weights_id(self) -> str:
        """Weights identity: the tag or file identity given at load time, else a hash of the text tower."""
        if self._weights_id is None:
            h = hashlib.sha256()
            for key, value in sorted(self.clip.state_dict().items()):
                if key.startswith(("visual.", "vision_model.", "visual_projection")):
                    continue
                h.update(key.encode())
                h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
            self._weights_id = "sha256:" + h.hexdigest()[:32]
        return self._weights_id

    # -- images --------------------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) -> the model's normalised input, in float32."""
        mean = torch.tensor(self.image_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, device=images.device).view(1, 3, 1, 1)
        return (images.float() - mean) / std

    def _mlp_slots(self):
        """(owner module, attribute name) of each image-tower MLP activation."""
        if self.backend == "transformers":
            return [(layer.mlp, "activation_fn") for layer in self.clip.vision_model.encoder.layers]
        if self.arch != "vit":
            return []
        return [(block.mlp, "gelu") for block in self.clip.visual.transformer.resblocks]

    @property
    def vision_activation(self) -> str | None:
        """``"gelu"`` or ``"quick_gelu"``: the image tower's MLP activation (None for ResNets)."""
        slots = self._mlp_slots()
        if not slots:
            return None
        act = getattr(*slots[0])
        name = type(act).__name__.lower()
        return "quick_gelu" if "quick" in name else "gelu"

    @contextlib.contextmanager
    def vision_numerics(self, *, activation: str | None = None, ln_eps: float | None = None):
        """Temporarily run the image tower with another MLP activation and/or LayerNorm epsilon.

        MaskCLIP runs OpenAI's weights in mmsegmentation's ViT, i.e. with exact GELU and LayerNorm
        eps 1e-6 instead of QuickGELU and 1e-5 (``configs/_base_/models/maskclip_vit16.py``); its
        presets switch this way. The text tower is untouched. ``None`` keeps a setting.

        Example:
            >>> from clipapro.clip import create_model
            >>> m = create_model("ViT-B-16", random_init=True)
            >>> with m.vision_numerics(activation="gelu", ln_eps=1e-6):
            ...     m.vision_activation
            'gelu'
        """
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if ln_eps is not None and (isinstance(ln_eps, bool) or not isinstance(ln_eps, (int, float))
                                   or not ln_eps > 0):
            raise ValueError(f"ln_eps must be a positive number, got {ln_eps!r}")
        saved_act, saved_eps = [], []
        try:
            if activation is not None:
                for owner, attr in self._mlp_slots():
                    saved_act.append((owner, attr, getattr(owner, attr)))
                    setattr(owner, attr, _activation_module(activation))
            if ln_eps is not None:
                tower = self.clip.vision_model if self.backend == "transformers" else self.clip.visual
                for mod in tower.modules():
                    if isinstance(mod, nn.LayerNorm):
                        saved_eps.append((mod, mod.eps))
                        mod.eps = float(ln_eps)
            yield self
        finally:
            for owner, attr, act in saved_act:
                setattr(owner, attr, act)
            for mod, eps in saved_eps:
                mod.eps = eps

    def encode_dense(self, images: torch.Tensor, *, dense_mode: str = "maskclip",
                     residual: bool | None = None, mlp: bool | None = None, gaussian_std: float = 5.0,
                     normalized: bool = False, return_keys: bool = False, remainder: str = "pad-even",
                     pos_embed_rule: str = "size"):
        """Dense embeddings (B, D, h, w), L2-normalised over D, float32.

        ``images``: (B, 3, H, W) float RGB in [0, 1] (or already normalised with ``normalized=True``).
        Sides that are not multiples of ``patch_size`` follow ``remainder`` (applied after
        normalisation): ``"pad-even"`` (default; zero padding split evenly, extra pixel at the end, as
        ClearCLIP's windows do; h = ceil(H / patch)), ``"pad-corner"`` (zero padding at the bottom and
        right, mmsegmentation's ``PatchEmbed(padding='corner')``: MaskCLIP; h = ceil(H / patch)) or
        ``"cut"`` (the remainder at the bottom and right is dropped, as the stride-``patch`` convolution
        of the OpenAI-CLIP forks does: SCLIP, NACLIP; h = H // patch). ``dense_mode`` is one of
        :data:`clipapro.clip.dense.DENSE_MODES`; ``residual`` and ``mlp`` override the mode's
        last-block switches (ViT only); ``pos_embed_rule`` is one of
        :data:`clipapro.clip.dense.POS_EMBED_RULES`. ``return_keys`` also returns the last block's keys
        (B, C, h, w), normalised over C.
        """
        check_tensor(images, "images", ndim=4, floating=True, finite=True)
        if images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
        mode = DENSE_MODES.get(dense_mode)
        if mode is None:
            raise ValueError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {dense_mode!r}")
        check_choice(remainder, "remainder", REMAINDER_RULES)
        check_choice(pos_embed_rule, "pos_embed_rule", POS_EMBED_RULES)
        images = images.to(self.device)
        pixels = images.float() if normalized else self.normalize(images)
        if remainder == "cut":
            pixels = cut_to_multiple(pixels, self.patch_size)
        else:
            pixels = pad_to_multiple(pixels, self.patch_size, corner=remainder == "pad-corner")
        tower = self._tower()
        with torch.no_grad():
            if self.arch == "resnet":
                if dense_mode != "maskclip" or residual is not None or mlp is not None:
                    raise ValueError("ResNet CLIP supports dense_mode='maskclip' only "
                                     "(no residual/mlp switches)")
                out = resnet_dense(tower, pixels.to(self.dtype), return_keys=return_keys)
            else:
                out = vit_dense(tower, pixels.to(self.dtype), attention=mode["attention"],
                                residual=mode["residual"] if residual is None else bool(residual),
                                mlp=mode["mlp"] if mlp is None else bool(mlp),
                                gaussian_std=gaussian_std, return_keys=return_keys,
                                pos_embed_rule=pos_embed_rule)
        if return_keys:
            feats, keys = out
            return F.normalize(feats.float(), dim=1), F.normalize(keys.float(), dim=1)
        return F.normalize(out.float(), dim=1)

    # -- text ----------------------------------------------------------------------------------------
    def encode_text(self, texts, *, batch_size: int = 256) -> torch.Tensor:
        """Text embeddings (T, D) of a list of strings, L2-normalised, float32."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")
        texts = list(texts)
        if not texts:
            raise ValueError("texts must not be empty")
        outs = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                outs.append(self._encode_text_batch(texts[start:start + batch_size]).float())
        return F.normalize(torch.cat(outs), dim=-1)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        device = self.device
        if self.backend == "open_clip":
            return self.clip.encode_text(self.tokenizer(texts).to(device))
        tok = self.tokenizer
        if getattr(tok, "is_open_clip", False):
            ids = tok(texts).to(device)
            out = self.clip.get_text_features(input_ids=ids)
        else:
            enc = tok(texts, padding="max_length", truncation=True, return_tensors="pt",
                      max_length=self.clip.config.text_config.max_position_embeddings)
            out = self.clip.get_text_features(input_ids=enc["input_ids"].to(device),
                                              attention_mask=enc["attention_mask"].to(device))
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, pretrained={self.pretrained!r}, backend={self.backend!r}, "
                f"arch={self.arch!r}, patch_size={self.patch_size}")


def pad_to_multiple(pixels: torch.Tensor, multiple: int, *, corner: bool = False) -> torch.Tensor:
    """Zero-pad (B, C, H, W) to multiples of ``multiple``: evenly on both sides (extra pixel at the
    end), or at the bottom and right only with ``corner=True``."""
    h, w = pixels.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return pixels
    if corner:
        return F.pad(pixels, (0, pw, 0, ph))
    return F.pad(pixels, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def cut_to_multiple(pixels: torch.Tensor, multiple: int) -> torch.Tensor:
    """Drop the bottom/right remainder of (B, C, H, W) so both sides are multiples of ``multiple``."""
    h, w = pixels.shape[-2:]
    hc, wc = h - h % multiple, w - w % multiple
    if hc == 0 or wc == 0:
        raise ValueError(f"an image of {h}x{w} pixels has no whole {multiple}x{multiple} patch "
                         f"(remainder='cut' needs both sides >= {multiple})")
    return pixels[..., :hc, :wc]
