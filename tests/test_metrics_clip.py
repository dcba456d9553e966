"""CLIP similarity with a small random-weight CLIP and a word-level tokenizer (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

from pruneforget.metrics.clip_score import CLIP_MEAN, CLIP_STD, clip_scores, preprocess_image, preprocess_images

WORDS = ["a", "painting", "of", "cat", "dog", "in", "the", "style", "van", "gogh"]


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    # eos_token_id must be the tokenizer's <eos>: CLIP pools the text at its first occurrence.
    config = CLIPConfig(
        text_config=dict(vocab_size=len(WORDS) + 4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=3, bos_token_id=2,
                         pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    return CLIPModel(config).eval(), _tokenizer()


def _images(n: int, h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_preprocess_shape_and_normalisation():
    x = preprocess_images(_images(3), 32)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    # A constant grey image normalises to (v/255 - mean) / std in each channel.
    grey = preprocess_image(Image.new("RGB", (50, 30), (128, 128, 128)), 24)
    expected = (128 / 255 - CLIP_MEAN) / CLIP_STD
    np.testing.assert_allclose(grey.mean(axis=(1, 2)), expected, atol=1e-5)
    np.testing.assert_allclose(grey.std(axis=(1, 2)), 0, atol=1e-5)


def test_preprocess_center_crops_the_long_side():
    # Left third red, middle third green, right third blue, 30 x 90: shortest side 30 -> crop is the middle.
    im = np.zeros((30, 90, 3), np.uint8)
    im[:, :30, 0], im[:, 30:60, 1], im[:, 60:, 2] = 255, 255, 255
    x = preprocess_image(Image.fromarray(im), 30)
    np.testing.assert_allclose(x[:, 15, 15], (np.array([0, 1, 0]) - CLIP_MEAN) / CLIP_STD, atol=1e-5)


def test_preprocess_matches_transformers_pil_processor():
    pil_processor = pytest.importorskip("transformers.models.clip.image_processing_pil_clip").CLIPImageProcessorPil
    proc = pil_processor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    images = [Image.fromarray(im) for im in _images(2, 45, 70, seed=1)]
    ref = proc(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(preprocess_images(images, 32), ref, atol=1e-5, rtol=0)


def test_clip_scores_are_deterministic_and_bounded(tiny_clip):
    model, tokenizer = tiny_clip
    images = _images(3)
    prompts = ["a painting of a cat", "a dog in the style of van gogh", "the cat"]
    s1 = clip_scores(model, tokenizer, images, prompts, batch_size=2)
    s2 = clip_scores(model, tokenizer, images, prompts)
    assert s1.shape == (3,)
    np.testing.assert_allclose(s1, s2, atol=1e-4)
    assert np.all(np.abs(s1) <= 100) and np.ptp(s1) > 0


def test_clip_score_is_scaled_cosine_of_the_embeddings(tiny_clip):
    model, tokenizer = tiny_clip
    images, prompt = _images(1, seed=2), "a cat"
    with torch.no_grad():
        out_t = model.get_text_features(**tokenizer([prompt], return_tensors="pt"))
        out_v = model.get_image_features(pixel_values=preprocess_images(images, 32))
    t = out_t if isinstance(out_t, torch.Tensor) else out_t.pooler_output
    v = out_v if isinstance(out_v, torch.Tensor) else out_v.pooler_output
    expected = 100 * (t @ v.T).item() / (t.norm() * v.norm()).item()
    assert clip_scores(model, tokenizer, images, [prompt])[0] == pytest.approx(expected, abs=1e-4)


def test_clip_scores_reject_unpaired_inputs(tiny_clip):
    model, tokenizer = tiny_clip
    with pytest.raises(ValueError, match="2 images, 1 prompts"):
        clip_scores(model, tokenizer, _images(2), ["a cat"])
