"""CLIP similarity between a generated image and its prompt (paper section 4, Table 1 and 3):

    CLIP(x, p) = 100 * cos(T(p), I(x))

with CLIP ViT-B/32 (`openai/clip-vit-base-patch32`). Lower is better for an erased style; on
COCO captions, higher means retained text alignment. The raw scaled cosine is reported, without
the max(., 0) clamp some libraries (torchmetrics) apply, so values lie in [-100, 100].

Image preprocessing is done here with PIL + numpy rather than `CLIPImageProcessor`: that
processor's default backend needs torchvision, which has no CPU build on the development
machines (recent transformers falls back to a PIL backend with a warning, older ones differ), so
doing it ourselves keeps the numbers independent of which backend a given install picks.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

# OpenAI CLIP's normalisation (the values of transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
PAPER_CLIP = "openai/clip-vit-base-patch32"

Images = Union[np.ndarray, Sequence[Image.Image]]


def preprocess_image(image: Image.Image, size: int) -> np.ndarray:
    """CLIP's image transform: resize the shortest side to `size` (bicubic), center crop
    size x size, scale to [0, 1], normalise with CLIP's mean/std. Returns float32 (3, size, size).

    The long side is int(size * long / short), and the crop offset (H - size) // 2, as in
    transformers' CLIP processor, so both give the same pixels.
    """
    image = image.convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample=Image.BICUBIC)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_images(images: Images, size: int) -> Tensor:
    """uint8 NHWC array or list of PIL images -> float32 pixel_values (N, 3, size, size)."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        images = [Image.fromarray(im) for im in images]
    return torch.from_numpy(np.stack([preprocess_image(im, size) for im in images]))


def load_clip(name_or_path: str = PAPER_CLIP, device: str | torch.device = "cpu"):
    """(CLIPModel in eval mode, its tokenizer) from a hub name or a local directory."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(name_or_path).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    return model, tokenizer


def _embedding(out) -> Tensor:
    # transformers 4.x returns the projected embedding; 5.x an output whose pooler_output it is.
    return out if isinstance(out, Tensor) else out.pooler_output


@torch.no_grad()
def clip_scores(model, tokenizer, images: Images, prompts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """100 * cos(T(p_i), I(x_i)) for each aligned (image, prompt) pair: float64 array (N,)."""
    prompts = list(prompts)
    if len(images) != len(prompts):
        raise ValueError(f"clip_scores pairs images and prompts: got {len(images)} images, {len(prompts)} prompts")
    if len(prompts) == 0:
        return np.zeros(0)
    device = next(model.parameters()).device
    size = model.config.vision_config.image_size
    max_len = model.config.text_config.max_position_embeddings
    scores = []
    for i in range(0, len(prompts), batch_size):
        pixels = preprocess_images(images[i:i + batch_size], size).to(device)
        # CLIP's text encoder has max_position_embeddings positions (77): longer prompts are cut.
        tok = tokenizer(prompts[i:i + batch_size], padding=True, truncation=True,
                        max_length=max_len, return_tensors="pt").to(device)
        t = _embedding(model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
        v = _embedding(model.get_image_features(pixel_values=pixels))
        cos = torch.nn.functional.cosine_similarity(t.float(), v.float(), dim=-1)
        scores.append(100.0 * cos.cpu().double().numpy())
    return np.concatenate(scores)
