"""Tiny randomly initialised CLIP models (no download) shared by the clip tests."""

import copy

import pytest
import torch

from clipapro.clip import create_model
from clipapro.clip.convert import open_clip_config_to_hf, open_clip_to_hf_state_dict

TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT_CFG = {"embed_dim": 16, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
           "text_cfg": TEXT_CFG}
RN_CFG = {"embed_dim": 16, "text_cfg": TEXT_CFG,
          "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8}}


def perturb_(module: torch.nn.Module, seed: int) -> None:
    """Make every parameter non-trivial (LayerNorm weights != 1, biases != 0) so tests see them all."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: thread start-up costs more than it saves (2-4x faster on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vit_cfg():
    return copy.deepcopy(VIT_CFG)


@pytest.fixture(scope="session")
def oc_vit():
    torch.manual_seed(1)
    m = create_model("tiny-vit", model_cfg=copy.deepcopy(VIT_CFG), random_init=True)
    perturb_(m.clip, 1)
    return m


@pytest.fixture(scope="session")
def oc_rn():
    torch.manual_seed(2)
    m = create_model("tiny-rn", model_cfg=copy.deepcopy(RN_CFG), random_init=True)
    perturb_(m.clip, 2)
    return m


@pytest.fixture(scope="session")
def hf_vit(oc_vit):
    """A transformers CLIPModel holding the SAME weights as ``oc_vit`` (through the converter)."""
    m = create_model("tiny-hf", backend="transformers", random_init=True,
                     model_cfg=open_clip_config_to_hf(copy.deepcopy(VIT_CFG)))
    result = m.clip.load_state_dict(open_clip_to_hf_state_dict(oc_vit.clip.state_dict()), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    m.tokenizer = _fallback_tokenizer()
    return m


def _fallback_tokenizer():
    from clipapro.clip.factory import _OpenClipTokenizer

    return _OpenClipTokenizer(77)


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 40, 56, generator=gen)
