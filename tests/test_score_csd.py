"""CSD style similarity on a small random CLIP vision config, loaded from a checkpoint written in
the released file's key layout (DDP `module.` prefix, OpenAI CLIP VisionTransformer names, the
training args pickled beside the weights).

The key mapping is checked against an independent forward pass: a minimal OpenAI-CLIP-style
VisionTransformer (conv1, class/positional embeddings, ln_pre, resblocks with
nn.MultiheadAttention's packed in_proj, QuickGELU MLP, ln_post on the class token) computes the
style embedding from the raw checkpoint tensors; the loaded transformers model must agree.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from pruneforget.metrics.csd import csd_similarity, load_csd, style_embeddings
from pruneforget.metrics.clip_score import preprocess_images

WIDTH, LAYERS, HEADS, PATCH, SIZE, STYLE_DIM = 32, 2, 2, 8, 32, 16
VISION = dict(hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              image_size=SIZE, patch_size=PATCH, hidden_act="quick_gelu", layer_norm_eps=1e-5)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(WIDTH, HEADS)
        self.ln_1, self.ln_2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(WIDTH, 4 * WIDTH))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x):  # x: (L, N, D), as OpenAI's transformer takes it
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class OpenAIViT(nn.Module):
    """The layout of `clip.load(...)[0].visual` with `proj` removed (as CSD_CLIP does)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, WIDTH, PATCH, PATCH, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(WIDTH) * 0.5)
        self.positional_embedding = nn.Parameter(torch.randn((SIZE // PATCH) ** 2 + 1, WIDTH) * 0.5)
        self.ln_pre, self.ln_post = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[Block() for _ in range(LAYERS)])

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).transpose(0, 1)
        x = self.transformer.resblocks(x).transpose(0, 1)
        return self.ln_post(x[:, 0, :])


def _randomise_norms(module: nn.Module, gen: torch.Generator) -> None:
    # LayerNorms start at (1, 0); random affine parameters make a swapped ln_1/ln_2 visible.
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data = 1 + 0.3 * torch.randn(m.weight.shape, generator=gen)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=gen)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    vit = OpenAIViT().eval()
    _randomise_norms(vit, gen)
    style = torch.randn(WIDTH, STYLE_DIM, generator=gen)
    content = torch.randn(WIDTH, STYLE_DIM, generator=gen)
    state = {f"module.backbone.{k}": v for k, v in vit.state_dict().items()}
    state["module.last_layer_style"] = style
    state["module.last_layer_content"] = content
    path = tmp_path_factory.mktemp("csd") / "checkpoint.pth"
    torch.save({"model_state_dict": state, "iter": 1, "args": argparse.Namespace(arch="vit_large", lr=3e-4)}, path)
    return path, vit, style


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 40, 48, 3), dtype=np.uint8)


def test_loaded_model_matches_an_openai_layout_forward_pass(checkpoint):
    path, vit, style = checkpoint
    model = load_csd(path, VISION)
    images = _images(3, seed=1)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(vit(preprocess_images(images, SIZE)) @ style, dim=-1)
    torch.testing.assert_close(style_embeddings(model, images), expected, atol=1e-5, rtol=1e-5)


def test_csd_is_deterministic_bounded_and_one_on_itself(checkpoint):
    model = load_csd(checkpoint[0], VISION)
    a, b = _images(4, seed=2), _images(4, seed=3)
    s1 = csd_similarity(model, a, b, batch_size=3)
    s2 = csd_similarity(model, a, b, batch_size=4)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    assert s1.shape == (4,) and np.all(np.abs(s1) <= 1.0)
    np.testing.assert_allclose(csd_similarity(model, a, a), 1.0, atol=1e-5)
    assert np.all(s1 < 1.0 - 1e-4)  # different images are not identical in style space


def test_missing_checkpoint_names_the_file_and_where_it_is_published(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth.*checkpoint\.pth.*learn2phoenix/CSD.*drive\.google"):
        load_csd(tmp_path / "nowhere.pth", VISION)


def test_checkpoint_that_does_not_match_the_config_is_refused(checkpoint):
    fewer = {**VISION, "num_hidden_layers": 1}  # the checkpoint has 2 blocks: one would be left unused
    with pytest.raises(KeyError, match="unmapped"):
        load_csd(checkpoint[0], fewer)


def test_written_checkpoint_is_the_released_layout_of_the_openai_model(checkpoint):
    """`to_csd_state_dict` (the smoke's stand-in writer) inverts the loader's mapping: from the
    loaded model's weights it gives back the released file's tensors, key for key."""
    from pruneforget.metrics.csd import _vision_prefix, to_csd_state_dict

    path, _, style = checkpoint
    released = torch.load(path, weights_only=False)["model_state_dict"]
    model = load_csd(path, VISION)
    written = to_csd_state_dict(model.backbone.state_dict(), style, LAYERS, _vision_prefix(model.backbone))
    assert set(written) == set(released)
    for key, value in released.items():
        if key != "module.last_layer_content":  # the content head is not loaded; zeros are written
            torch.testing.assert_close(written[key], value, atol=0, rtol=0)
