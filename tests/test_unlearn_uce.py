"""UCE's closed-form edit: the normal equations hold, nothing to erase changes nothing, erased
tokens land on the guide's projections and preserved ones stay, for several concepts at once."""

from __future__ import annotations

import copy

import pytest
import torch

from pruneforget.unlearn import uce
from pruneforget.unlearn.concepts import ConceptSet, cross_attention_layers, embed_prompts

PARAMS = {"lam": 0.5, "erase_scale": 1.0, "preserve_scale": None, "preserve_empty": True}
ARTISTS = ConceptSet(erase=("stripes", "dots", "waves"), guide="plain", preserve=("checker", "plaid"))


def projections(pipe) -> dict[str, torch.Tensor]:
    """Every cross-attention to_k / to_v weight, copied."""
    return {f"{name}.{p}": getattr(attn, p).weight.detach().clone()
            for name, attn in cross_attention_layers(pipe.unet).items() for p in ("to_k", "to_v")}


def test_uce_weights_satisfy_normal_equations(tiny_pipe):
    before = projections(tiny_pipe)
    uce.unlearn(tiny_pipe, ARTISTS, PARAMS)
    after = projections(tiny_pipe)
    ce, cg = uce.erase_columns(tiny_pipe, ARTISTS.erase, ARTISTS.guide)
    cp = uce.preserve_columns(tiny_pipe, ["", *ARTISTS.preserve])
    sp = max(0.1, 1 / 3)  # the empty prompt and two styles are preserved
    for name, w0 in before.items():
        a, b = uce.uce_normal_matrices(w0, ce, cg, cp, 0.5, 1.0, sp)
        residual = (after[name].double() @ a - b).norm() / b.norm()
        assert residual < 1e-5, (name, float(residual))
        assert not torch.allclose(after[name], w0)  # the edit did something


def test_closed_form_with_nothing_to_erase_returns_the_original_weights():
    torch.manual_seed(0)
    w0 = torch.randn(12, 20, dtype=torch.float64)
    none = torch.zeros(0, 20, dtype=torch.float64)
    preserve = torch.randn(30, 20, dtype=torch.float64)
    for cp in (none, preserve):
        w = uce.uce_closed_form(w0, none, none, cp, 0.5, 1.0, 0.3)
        torch.testing.assert_close(w, w0, rtol=1e-10, atol=1e-10)


def test_closed_form_moves_erased_columns_to_guide_projections_and_keeps_preserved_ones():
    torch.manual_seed(0)
    d = 40
    w0 = torch.randn(16, d, dtype=torch.float64)
    ce, cg, cp = torch.randn(6, d), torch.randn(6, d), torch.randn(10, d)
    w = uce.uce_closed_form(w0, ce, cg, cp, 1e-8, 1.0, 1.0)
    torch.testing.assert_close(w @ ce.double().T, w0 @ cg.double().T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w @ cp.double().T, w0 @ cp.double().T, rtol=1e-5, atol=1e-5)


def test_aligned_columns_pair_tokens_from_the_last_word_to_the_end():
    a = torch.arange(6.0)[:, None]  # [CLS] w1 w2 [SEP] pad pad: end token at 3, last word at 2
    b = 10 + torch.arange(6.0)[:, None]  # [CLS] w1 [SEP] pad pad pad: end at 2, last word at 1
    ca, cb = uce.aligned_columns(a, 3, b, 2)
    assert ca.squeeze(1).tolist() == [2, 3, 4, 5]
    assert cb.squeeze(1).tolist() == [11, 12, 13, 14]  # last word, end token and pads line up


def test_several_erased_concepts_land_on_the_guide_in_the_pipeline(tiny_pipe):
    """lam -> 0 and no preserve set: W* c_e = W0 c_guide for every token column of all three styles."""
    before = projections(tiny_pipe)
    concepts = ConceptSet(erase=("stripes", "dots", "waves"), guide="plain")
    ce, cg = uce.erase_columns(tiny_pipe, concepts.erase, concepts.guide)
    assert ce.shape[0] == 3 * (tiny_pipe.tokenizer.model_max_length - 1)  # one-token concepts and guide
    uce.unlearn(tiny_pipe, concepts, {**PARAMS, "lam": 1e-6, "preserve_empty": False})
    after = projections(tiny_pipe)
    for name, w0 in before.items():
        reached = after[name].double() @ ce.double().T
        wanted = w0.double() @ cg.double().T
        assert (reached - wanted).norm() / wanted.norm() < 1e-3, name


def test_preserved_concepts_keep_their_projections_in_the_pipeline(tiny_pipe):
    before = projections(tiny_pipe)
    uce.unlearn(tiny_pipe, ARTISTS, {**PARAMS, "lam": 1e-6, "preserve_scale": 1.0})
    after = projections(tiny_pipe)
    emb, _ = embed_prompts(tiny_pipe, ["", *ARTISTS.preserve])
    cp = emb.reshape(-1, emb.shape[-1]).double()
    for name, w0 in before.items():
        kept = w0.double() @ cp.T
        assert (after[name].double() @ cp.T - kept).norm() / kept.norm() < 1e-3, name


def test_default_edit_moves_erased_projections_towards_the_guide(tiny_pipe):
    before = projections(tiny_pipe)
    ce, cg = uce.erase_columns(tiny_pipe, ARTISTS.erase, ARTISTS.guide)
    uce.unlearn(tiny_pipe, ARTISTS, PARAMS)
    after = projections(tiny_pipe)
    for name, w0 in before.items():
        target = w0 @ cg.T
        assert (after[name] @ ce.T - target).norm() < 0.5 * (w0 @ ce.T - target).norm(), name


def test_towards_none_maps_onto_the_empty_prompt(tiny_pipe):
    """No guide: the published UCE's 'towards none' guides onto the empty prompt's embeddings (not zero)."""
    ce, cg = uce.erase_columns(tiny_pipe, ("stripes",), None)
    emb, end = embed_prompts(tiny_pipe, [""])
    assert int(end[0]) == 1  # [CLS] [SEP]: the alignment starts at the start token
    torch.testing.assert_close(cg, emb[0, : cg.shape[0]])
    assert cg.norm() > 0


def test_published_preserve_scale_counts_the_empty_prompt():
    assert uce.preserve_scale({"preserve_scale": None}, 1) == 1.0  # nudity: [''] only
    assert uce.preserve_scale({"preserve_scale": None}, 11) == pytest.approx(0.1)
    assert uce.preserve_scale({"preserve_scale": None}, 3) == pytest.approx(1 / 3)
    assert uce.preserve_scale({"preserve_scale": 0.25}, 3) == 0.25


def test_uce_edits_only_cross_attention_keys_and_values(tiny_pipe):
    before = copy.deepcopy(tiny_pipe.unet.state_dict())
    uce.unlearn(tiny_pipe, ARTISTS, PARAMS)
    for name, value in tiny_pipe.unet.state_dict().items():
        edited = ".attn2.to_k." in name or ".attn2.to_v." in name
        assert torch.equal(value, before[name]) != edited, name
