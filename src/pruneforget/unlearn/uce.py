"""UCE, unified concept editing (Gandikota et al., 2024): a closed-form edit of every cross-attention
key and value projection (PAPER_FACTS section 3). No training loop.

For each `attn2.to_k` and `attn2.to_v` weight W0 (out x d), with text-embedding columns c (d):

    W* = [lam W0 + es sum_e v*_e c_e^T + sp sum_p (W0 c_p) c_p^T] [lam I + es sum_e c_e c_e^T + sp sum_p c_p c_p^T]^-1

v*_e = W0 c_guide (erased token -> the guide's token), lam 0.5, es (erase scale) 1 and
sp = max(0.1, 1 / number of preserved prompts), as in the published code
(rohitgandikota/unified-concept-editing, train-scripts/train_erase.py, `edit_model`, technique
"replace"). Choices that code makes and this module follows:

- Which token columns of a concept are erased: those from the concept prompt's LAST word token to
  the end of the padded sequence (last word, end token, padding), aligned position by position
  with the guide prompt's from ITS last word token; the longer tail is cut to the shorter. With a
  causal CLIP encoder these are the tokens that have seen the whole concept. For the empty guide
  ("towards none") the alignment starts at the start token.
- "Towards none" (no guide, used for nudity) maps onto the empty prompt's embeddings, v* = W0 c(""),
  not onto zero.
- The empty prompt is always preserved too (`preserve_empty: true`, the code's `[''] + preserve`),
  and sp counts it: nudity with no preserve set gets sp = max(0.1, 1/1) = 1. Preserved prompts
  contribute every token column (the whole padded sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from torch import nn

from pruneforget.unlearn import Unlearned
from pruneforget.unlearn.concepts import (
    ConceptSet,
    UnlearnInputError,
    cross_attention_layers,
    embed_prompts,
    validate_concepts,
)

PARAMS = ("lam", "erase_scale", "preserve_scale", "preserve_empty")


def check_params(params: dict) -> None:
    """Fail on a bad `unlearn.uce` section before any work."""
    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise UnlearnInputError(f"unlearn.uce is missing {missing}; it needs {list(PARAMS)}")
    if not params["lam"] > 0:
        raise UnlearnInputError(f"unlearn.uce.lam must be > 0 (it keeps the system solvable), got {params['lam']!r}")


def uce_normal_matrices(
    w0: torch.Tensor,
    erase_cols: torch.Tensor,
    guide_cols: torch.Tensor,
    preserve_cols: torch.Tensor,
    lam: float,
    erase_scale: float,
    preserve_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two bracketed matrices of UCE's closed form (W* A = B), in float64.

    Columns are given as rows: erase_cols and guide_cols (n_e, d), aligned row by row;
    preserve_cols (n_p, d). A = lam I + es Ce^T Ce + sp Cp^T Cp;
    B = lam W0 + es (W0 Cg^T) Ce + sp (W0 Cp^T) Cp, i.e. v*_e = W0 c_guide."""
    w0, ce, cg, cp = (x.double() for x in (w0, erase_cols, guide_cols, preserve_cols))
    eye = torch.eye(w0.shape[1], dtype=torch.float64, device=w0.device)
    a = lam * eye + erase_scale * ce.T @ ce + preserve_scale * cp.T @ cp
    b = lam * w0 + erase_scale * (w0 @ cg.T) @ ce + preserve_scale * (w0 @ cp.T) @ cp
    return a, b


def uce_closed_form(w0: torch.Tensor, erase_cols, guide_cols, preserve_cols, lam, erase_scale, preserve_scale) -> torch.Tensor:
    """UCE's edited weight W* = B A^-1 (see `uce_normal_matrices`), solved in float64, as float64."""
    a, b = uce_normal_matrices(w0, erase_cols, guide_cols, preserve_cols, lam, erase_scale, preserve_scale)
    # W* A = B  <=>  A^T W*^T = B^T, and A is symmetric.
    return torch.linalg.solve(a, b.T).T


def aligned_columns(emb_a: torch.Tensor, end_a: int, emb_b: torch.Tensor, end_b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token embeddings of two prompts from each one's last word token (end - 1) to the sequence
    end, cut to the same length, so row i of one is paired with row i of the other."""
    start_a, start_b = int(end_a) - 1, int(end_b) - 1
    n = emb_a.shape[0] - max(start_a, start_b)
    return emb_a[start_a : start_a + n], emb_b[start_b : start_b + n]


def erase_columns(pipe: StableDiffusionPipeline, erase: tuple[str, ...], guide: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(erase columns, guide columns) of all concepts, stacked: rows c_e and the c_guide they map to."""
    emb, end = embed_prompts(pipe, [*erase, guide or ""])
    pairs = [aligned_columns(emb[i], end[i], emb[-1], end[-1]) for i in range(len(erase))]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def preserve_columns(pipe: StableDiffusionPipeline, retain: list[str]) -> torch.Tensor:
    """Every token column of every preserved prompt, stacked (0 rows if nothing is preserved)."""
    if not retain:
        d = pipe.text_encoder.config.hidden_size
        return torch.zeros(0, d, device=pipe.text_encoder.device)
    emb, _ = embed_prompts(pipe, retain)
    return emb.reshape(-1, emb.shape[-1])


def preserve_scale(params: dict, n_retain: int) -> float:
    """sp: the configured value, or the published default max(0.1, 1 / number of preserved prompts)."""
    if params["preserve_scale"] is not None:
        return float(params["preserve_scale"])
    return max(0.1, 1.0 / n_retain) if n_retain else 0.0


@dataclass(frozen=True)
class UceEdit:
    """Everything UCE's edit needs besides the weights: the erase columns and the guide columns
    they map to (aligned rows), the preserved columns, and the scalars of the closed form. Built
    once from the text encoder (`uce_edit`); the bilevel run's `uce` upper level re-applies it."""

    erase: torch.Tensor
    guide: torch.Tensor
    preserve: torch.Tensor
    lam: float
    erase_scale: float
    preserve_scale: float
    preserve_prompts: tuple[str, ...]


def uce_edit(pipe: StableDiffusionPipeline, concepts: ConceptSet, params: dict) -> UceEdit:
    """The columns and scalars of UCE's edit of `concepts` (see the module docstring); checks
    `params` (the `unlearn.uce` section) and the concepts first."""
    check_params(params)
    validate_concepts(pipe, concepts)
    retain = ([""] if params["preserve_empty"] else []) + list(concepts.preserve)
    ce, cg = erase_columns(pipe, concepts.erase, concepts.guide)
    return UceEdit(ce, cg, preserve_columns(pipe, retain), float(params["lam"]), float(params["erase_scale"]),
                   preserve_scale(params, len(retain)), tuple(retain))


@torch.no_grad()
def edit_cross_attention(unet: nn.Module, edit: UceEdit) -> dict:
    """Replace every cross-attention `to_k` / `to_v` weight W0 of `unet` by UCE's closed form
    W* (`uce_closed_form`, from W0 as it is now), in place. Returns the number of edited
    matrices and weights and the relative change ||W* - W0|| / ||W0|| over all of them."""
    layers = cross_attention_layers(unet)
    edited, change, norm = 0, 0.0, 0.0
    for name, attn in layers.items():
        for proj in (attn.to_k, attn.to_v):
            w0 = proj.weight
            if w0.shape[1] != edit.erase.shape[1]:
                raise UnlearnInputError(
                    f"{name}: cross-attention expects {w0.shape[1]}-d text embeddings but the text encoder "
                    f"gives {edit.erase.shape[1]}-d; the pipeline's text encoder and UNet do not belong together"
                )
            w = uce_closed_form(w0, edit.erase.to(w0.device), edit.guide.to(w0.device), edit.preserve.to(w0.device),
                                edit.lam, edit.erase_scale, edit.preserve_scale)
            change += float((w - w0.double()).norm() ** 2)
            norm += float(w0.double().norm() ** 2)
            w0.copy_(w.to(w0.dtype))
            edited += w0.numel()
    return {"edited_matrices": 2 * len(layers), "edited_weights": edited,
            "relative_change": (change / norm) ** 0.5 if norm else 0.0}


@torch.no_grad()
def unlearn(pipe: StableDiffusionPipeline, concepts: ConceptSet, params: dict, *, seed: int = 0,
            work_dir: Path | None = None) -> Unlearned:
    """Edit every cross-attention `to_k` and `to_v` of `pipe.unet` in place (see the module docstring).

    `seed` and `work_dir` are unused: the edit is deterministic and writes nothing."""
    edit = uce_edit(pipe, concepts, params)
    stats = {
        **edit_cross_attention(pipe.unet, edit),
        "erase_columns": int(edit.erase.shape[0]),
        "preserve_prompts": list(edit.preserve_prompts),
        "preserve_scale": edit.preserve_scale,
        "guide": concepts.guide,
    }
    return Unlearned(pipe, stats)
