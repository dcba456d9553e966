"""CSD style similarity (paper section 4, Table 1; lower is better for an erased style).

CSD (Somepalli et al., "Measuring Style Similarity in Diffusion Models", 2024) is a CLIP ViT-L/14
image encoder fine-tuned for style, with a linear style projection on its pooled output:

    s(x) = normalize(LN_post(ViT(x)[CLS]) @ W_style)          (768-d, unit length)
    CSD(x_a, x_b) = s(x_a) . s(x_b)                           (cosine, in [-1, 1])

Table 1 reports 100 x the mean over same-seed pairs (unlearned model vs the distilled model,
whose CSD against itself is therefore 100).

Weights: the released checkpoint is `checkpoint.pth` (about 1.2 GB), linked as "pretrained
model" from the README of https://github.com/learn2phoenix/CSD and hosted on Google Drive
(https://drive.google.com/file/d/1FX0xs8p-C7Ob-h5Y4cUhTeOepHzXv_46/view). It cannot be fetched
by a script here (no hub copy, and the Drive link needs a browser or gdown), so it is a local
file named in config (`score.csd_checkpoint`). The backbone's architecture comes from a CLIP
config (`score.csd_backbone`, the `openai/clip-vit-large-patch14` config: only the config is
read, every weight comes from the checkpoint, since CSD fine-tunes the backbone too).

Key mapping. The checkpoint is `torch.save({"model_state_dict": ..., "args": Namespace, ...})`
of the repository's `CSD_CLIP` wrapped in DistributedDataParallel, so every key starts with
`module.`; its backbone is OpenAI CLIP's VisionTransformer (`clip.load("ViT-L/14").visual`).
`convert_csd_state_dict` maps, for the transformers `CLIPVisionModel`:

    module.backbone.class_embedding                     -> embeddings.class_embedding
    module.backbone.positional_embedding                -> embeddings.position_embedding.weight
    module.backbone.conv1.weight                        -> embeddings.patch_embedding.weight
    module.backbone.ln_pre.{weight,bias}                -> pre_layrnorm.{weight,bias}
    module.backbone.transformer.resblocks.{i}.
        attn.in_proj_weight / in_proj_bias (rows q|k|v) -> encoder.layers.{i}.self_attn.{q,k,v}_proj.{weight,bias}
        attn.out_proj.{weight,bias}                     -> encoder.layers.{i}.self_attn.out_proj.{weight,bias}
        ln_1 / ln_2                                     -> encoder.layers.{i}.layer_norm1 / layer_norm2
        mlp.c_fc / mlp.c_proj                           -> encoder.layers.{i}.mlp.fc1 / mlp.fc2
    module.backbone.ln_post.{weight,bias}               -> post_layernorm.{weight,bias}
    module.last_layer_style  (1024 x 768)               -> CSDStyleModel.style_projection
    module.last_layer_content                           -> unused (the content head)
    module.backbone.proj                                -> unused (CSD sets it to None; absent)

(transformers 4.x nests the vision weights under `vision_model.`; the prefix is added when
the installed version has it.) Anything else left over, or missing, is an error: a silently
half-loaded model would score plausibly and wrongly. Images are preprocessed as CSD's eval
transform does: bicubic resize of the short side to 224, center crop, CLIP mean/std
(`clip_score.preprocess_images`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pruneforget.metrics.clip_score import Images, preprocess_images

CSD_CHECKPOINT_FILE = "checkpoint.pth"
CSD_CHECKPOINT_URL = "https://drive.google.com/file/d/1FX0xs8p-C7Ob-h5Y4cUhTeOepHzXv_46/view"
CSD_REPOSITORY = "https://github.com/learn2phoenix/CSD"
CSD_BACKBONE = "openai/clip-vit-large-patch14"


class CSDStyleModel(nn.Module):
    """CLIP vision backbone + CSD's linear style projection; forward gives unit style embeddings."""

    def __init__(self, vision_config, style_dim: int):
        super().__init__()
        from transformers import CLIPVisionModel

        self.backbone = CLIPVisionModel(vision_config)
        self.style_projection = nn.Parameter(torch.zeros(vision_config.hidden_size, style_dim))

    @property
    def image_size(self) -> int:
        return int(self.backbone.config.image_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        features = self.backbone(pixel_values=pixel_values).pooler_output
        return F.normalize(features @ self.style_projection, dim=-1)


def _vision_config(backbone):
    """A CLIPVisionConfig from a hub name / local directory (CLIP or CLIP-vision config), a dict, or a config."""
    from transformers import CLIPVisionConfig

    if isinstance(backbone, CLIPVisionConfig):
        return backbone
    if isinstance(backbone, dict):
        return CLIPVisionConfig(**backbone)
    local_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    try:
        return CLIPVisionConfig.from_pretrained(str(backbone), local_files_only=local_only)
    except OSError as err:
        raise FileNotFoundError(
            f"CSD backbone config {backbone!r} could not be loaded ({err.__class__.__name__}: {str(err)[:200]}); "
            f"set score.csd_backbone to a local copy of the {CSD_BACKBONE} config (config.json)"
        ) from err


def _vision_prefix(backbone: nn.Module) -> str:
    # transformers 4.x: CLIPVisionModel.vision_model.embeddings...; 5.x: CLIPVisionModel.embeddings...
    return "vision_model." if hasattr(backbone, "vision_model") else ""


def convert_csd_state_dict(state: dict[str, Tensor], num_layers: int, prefix: str = "") -> tuple[dict[str, Tensor], Tensor]:
    """(CLIPVisionModel state dict, style projection) from CSD's `model_state_dict` (see the
    module docstring for the mapping). Raises KeyError naming keys that are missing or unused."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out: dict[str, Tensor] = {}
    used = set()

    def take(key: str) -> Tensor:
        if key not in state:
            raise KeyError(f"CSD checkpoint lacks {key!r} (is this the CSD ViT-L checkpoint?)")
        used.add(key)
        return state[key]

    b = "backbone."
    out["embeddings.class_embedding"] = take(b + "class_embedding")
    out["embeddings.position_embedding.weight"] = take(b + "positional_embedding")
    out["embeddings.patch_embedding.weight"] = take(b + "conv1.weight")
    for p in ("weight", "bias"):
        out[f"pre_layrnorm.{p}"] = take(f"{b}ln_pre.{p}")
        out[f"post_layernorm.{p}"] = take(f"{b}ln_post.{p}")
    for i in range(num_layers):
        src, dst = f"{b}transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for p in ("weight", "bias"):
            q, k, v = take(f"{src}attn.in_proj_{p}").chunk(3, dim=0)
            out[f"{dst}self_attn.q_proj.{p}"], out[f"{dst}self_attn.k_proj.{p}"], out[f"{dst}self_attn.v_proj.{p}"] = q, k, v
            out[f"{dst}self_attn.out_proj.{p}"] = take(f"{src}attn.out_proj.{p}")
            out[f"{dst}layer_norm1.{p}"] = take(f"{src}ln_1.{p}")
            out[f"{dst}layer_norm2.{p}"] = take(f"{src}ln_2.{p}")
            out[f"{dst}mlp.fc1.{p}"] = take(f"{src}mlp.c_fc.{p}")
            out[f"{dst}mlp.fc2.{p}"] = take(f"{src}mlp.c_proj.{p}")
    style = take("last_layer_style")
    ignored = {"last_layer_content", b + "proj"}
    left = sorted(k for k in state if k not in used and k not in ignored and not k.startswith("last_layer_content."))
    if left:
        raise KeyError(f"CSD checkpoint has {len(left)} unmapped key(s), e.g. {left[:3]}: the backbone config "
                       f"(layers={num_layers}) does not match the checkpoint")
    return {prefix + k: v.float().contiguous() for k, v in out.items()}, style.float()


def to_csd_state_dict(vision: dict[str, Tensor], style: Tensor, num_layers: int, prefix: str = "") -> dict[str, Tensor]:
    """The released checkpoint's `model_state_dict` (DDP `module.` keys, OpenAI layout) from a
    CLIPVisionModel state dict and a style projection: the inverse of `convert_csd_state_dict`,
    used to write checkpoints in the released format (the sd21 smoke's stand-in). The content
    head gets a copy of the style projection's shape (CSD's `last_layer_content`, unused here)."""
    v = {k.removeprefix(prefix): t for k, t in vision.items()}
    b = "module.backbone."
    out = {
        b + "class_embedding": v["embeddings.class_embedding"],
        b + "positional_embedding": v["embeddings.position_embedding.weight"],
        b + "conv1.weight": v["embeddings.patch_embedding.weight"],
    }
    for p in ("weight", "bias"):
        out[f"{b}ln_pre.{p}"] = v[f"pre_layrnorm.{p}"]
        out[f"{b}ln_post.{p}"] = v[f"post_layernorm.{p}"]
    for i in range(num_layers):
        src, dst = f"encoder.layers.{i}.", f"{b}transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{p}"] = torch.cat([v[f"{src}self_attn.{x}_proj.{p}"] for x in "qkv"], dim=0)
            out[f"{dst}attn.out_proj.{p}"] = v[f"{src}self_attn.out_proj.{p}"]
            out[f"{dst}ln_1.{p}"] = v[f"{src}layer_norm1.{p}"]
            out[f"{dst}ln_2.{p}"] = v[f"{src}layer_norm2.{p}"]
            out[f"{dst}mlp.c_fc.{p}"] = v[f"{src}mlp.fc1.{p}"]
            out[f"{dst}mlp.c_proj.{p}"] = v[f"{src}mlp.fc2.{p}"]
    out["module.last_layer_style"] = style
    out["module.last_layer_content"] = torch.zeros_like(style)
    return {k: t.detach().clone().contiguous() for k, t in out.items()}


def _read_checkpoint(path: Path) -> dict[str, Tensor]:
    """`model_state_dict` of a CSD checkpoint. The released file also pickles the training
    arguments (an argparse.Namespace), which `weights_only` loading allows explicitly; nothing
    else is unpickled."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unexpected pickled object, a truncated file, ...
        raise ValueError(f"{path}: not a loadable CSD checkpoint ({err.__class__.__name__}: {str(err)[:300]})") from err
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise ValueError(f"{path}: expected a dict with 'model_state_dict' (the released {CSD_CHECKPOINT_FILE}), "
                         f"got {type(checkpoint).__name__} with keys {list(checkpoint)[:5] if isinstance(checkpoint, dict) else []}")
    return checkpoint["model_state_dict"]


def missing_checkpoint_message(path: str | os.PathLike) -> str:
    return (f"CSD checkpoint {path} does not exist. Download the CSD ViT-L checkpoint ({CSD_CHECKPOINT_FILE}, "
            f"linked from {CSD_REPOSITORY}: {CSD_CHECKPOINT_URL}) and set score.csd_checkpoint to its path")


def load_csd(checkpoint: str | os.PathLike, backbone=CSD_BACKBONE, device: str | torch.device = "cpu") -> CSDStyleModel:
    """The CSD style model from the released checkpoint file and a CLIP vision config
    (`backbone`: hub name, local directory, dict or CLIPVisionConfig). Eval mode, float32."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(missing_checkpoint_message(path))
    config = _vision_config(backbone)
    state = _read_checkpoint(path)
    style_key = next((k for k in state if k.removeprefix("module.") == "last_layer_style"), None)
    if style_key is None:
        raise KeyError(f"{path}: no 'last_layer_style' in model_state_dict: not a CSD checkpoint")
    model = CSDStyleModel(config, style_dim=state[style_key].shape[1])
    weights, style = convert_csd_state_dict(state, config.num_hidden_layers, _vision_prefix(model.backbone))
    model.backbone.load_state_dict(weights, strict=True)
    with torch.no_grad():
        model.style_projection.copy_(style)
    return model.to(device).eval()


@torch.no_grad()
def style_embeddings(model: CSDStyleModel, images: Images, batch_size: int = 32) -> Tensor:
    """Unit-length CSD style embeddings (N, style_dim), float32 on CPU."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = preprocess_images(images[start:start + batch_size], model.image_size).to(device)
        out.append(model(pixels).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.style_projection.shape[1])


def csd_similarity(model: CSDStyleModel, images_a: Images, images_b: Images, batch_size: int = 32) -> np.ndarray:
    """Cosine of the L2-normalised CSD style embeddings of aligned pairs (a_i, b_i): float64 (N,),
    each in [-1, 1]. Table 1 reports 100 x the mean, against the distilled model's images."""
    if len(images_a) != len(images_b):
        raise ValueError(f"csd_similarity pairs images: got {len(images_a)} and {len(images_b)}")
    ea, eb = style_embeddings(model, images_a, batch_size), style_embeddings(model, images_b, batch_size)
    return (ea * eb).sum(-1).clamp(-1.0, 1.0).double().numpy()

