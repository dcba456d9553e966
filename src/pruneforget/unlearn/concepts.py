"""What every unlearning method is given, and the checks they share: the concept set, its
validation against the pipeline, the cross-attention layers, and prompt embeddings.

A concept is a plain string ("Vincent van Gogh", "nudity", "stripes"). Validation runs before any
expensive work and names the offending word or module and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import Attention


class UnlearnInputError(ValueError):
    """A concept set, config or model an unlearning method cannot work with; the message says why."""


@dataclass(frozen=True)
class ConceptSet:
    """The concepts to remove and the method-specific sets around them.

    erase:    the concepts to remove (at least one; several are removed together).
    guide:    UCE: what the erased concepts are mapped to ("art" for artists). None means
              "towards none": the empty prompt, as the published UCE code does for nudity.
    preserve: UCE: concepts whose projections must not move (the other artists).
    pairs:    ConceptPrune: (base prompt, target prompt) pairs, grouped by the concept they probe
              (group name -> pairs); each group's skilled weights are found separately and the
              union is pruned (the published multi-concept union).
    """

    erase: tuple[str, ...]
    guide: str | None = None
    preserve: tuple[str, ...] = ()
    pairs: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    def __post_init__(self):
        # Accept lists from JSON/YAML; store tuples so a set cannot change after validation.
        object.__setattr__(self, "erase", tuple(self.erase))
        object.__setattr__(self, "preserve", tuple(self.preserve))
        object.__setattr__(self, "guide", self.guide or None)
        object.__setattr__(self, "pairs", {k: tuple(tuple(p) for p in v) for k, v in self.pairs.items()})
        if self.guide is not None and self.guide in self.erase:
            raise UnlearnInputError(
                f"guide {self.guide!r} is one of the concepts to erase {list(self.erase)}: UCE would map it onto "
                "itself and leave it intact; guide towards another concept (plain, art) or none"
            )


def cross_attention_layers(unet: UNet2DConditionModel) -> dict[str, Attention]:
    """Every cross-attention module (`...attn2`) of the UNet, by name, in module order.

    Raises UnlearnInputError when there is none: the text cannot reach such a model through
    cross-attention, so UCE has nothing to edit and ConceptPrune's prompts change nothing."""
    layers = {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, Attention) and name.endswith("attn2") and module.is_cross_attention
    }
    if not layers:
        raise UnlearnInputError(
            f"the model's UNet ({type(unet).__name__}) has no cross-attention (no `attn2` modules), so "
            "text concepts cannot be edited in it; use a text-conditioned UNet with CrossAttn blocks "
            "(a Stable-Diffusion-shaped UNet2DConditionModel)"
        )
    return layers


def useful_tokens(tokenizer, text: str) -> list[str]:
    """The tokens of `text` that carry meaning: neither special tokens nor the unknown token."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    special = set(tokenizer.all_special_ids)
    return [tokenizer.convert_ids_to_tokens(i) for i in ids if i not in special]


def check_prompt(tokenizer, text: str, role: str) -> None:
    """Fail naming `text` if it tokenises to nothing useful or does not fit the tokenizer."""
    if not isinstance(text, str) or not text.strip():
        raise UnlearnInputError(f"{role}: {text!r} is empty; give a word or phrase")
    if not useful_tokens(tokenizer, text):
        tokens = tokenizer.tokenize(text)
        raise UnlearnInputError(
            f"{role}: {text!r} tokenises to nothing the text encoder knows ({type(tokenizer).__name__} gives "
            f"{tokens}); use a word in the tokenizer's vocabulary"
        )
    n = len(tokenizer(text, add_special_tokens=True).input_ids)
    if n > tokenizer.model_max_length:
        raise UnlearnInputError(
            f"{role}: {text!r} is {n} tokens, longer than the tokenizer's {tokenizer.model_max_length}; "
            "it would be cut off, so shorten it"
        )


def validate_concepts(pipe: StableDiffusionPipeline, concepts: ConceptSet) -> None:
    """Check a concept set against the pipeline before any work; raise UnlearnInputError naming the problem."""
    if not concepts.erase:
        raise UnlearnInputError(
            "no concepts to erase: the concept list is empty; give at least one (e.g. unlearn.artists.concepts)"
        )
    overlap = sorted(set(concepts.erase) & set(concepts.preserve))
    if overlap:
        raise UnlearnInputError(f"concepts {overlap} are both erased and preserved; remove them from one list")
    for c in concepts.erase:
        check_prompt(pipe.tokenizer, c, "concept to erase")
    if concepts.guide is not None:
        check_prompt(pipe.tokenizer, concepts.guide, "guide concept")
    for c in concepts.preserve:
        check_prompt(pipe.tokenizer, c, "concept to preserve")
    for group, pairs in concepts.pairs.items():
        for base, target in pairs:
            check_prompt(pipe.tokenizer, base, f"base prompt of {group!r}")
            check_prompt(pipe.tokenizer, target, f"target prompt of {group!r}")
    cross_attention_layers(pipe.unet)


@torch.no_grad()
def embed_prompts(pipe: StableDiffusionPipeline, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token embeddings of `prompts` exactly as the UNet receives them, and each prompt's end-token index.

    Embeddings (B, L, D) come from the pipeline's own `encode_prompt` (padding to the tokenizer's
    full length, as at sampling time). The end token ([SEP] for BERT, <|endoftext|> for CLIP) is the
    last attended token of the tokenizer's padding mask, so index `end - 1` is the prompt's last
    word token (or the start token for the empty prompt)."""
    device = pipe.text_encoder.device
    embeddings = pipe.encode_prompt(prompts, device, 1, False)[0]
    mask = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).attention_mask
    return embeddings, mask.sum(dim=1) - 1
