"""APTP's router: per-group predictor, codes as gate logits, deterministic argmax, save/load."""

from __future__ import annotations

import pytest
import torch

from pruneforget.prune.router import GateLayout, PromptEncoder, Router, RouterConfig, load_router, save_router

LAYOUT = GateLayout(width=(("attn", 2), ("resnet", 8)), depth=(("skip0", 1), ("skip1", 1)))


def _router(n=3, seed=0):
    return Router(RouterConfig(LAYOUT, embed_dim=6, n_codes=n, prompt_encoder="minilm"), seed=seed)


def test_predictor_has_one_linear_per_width_group_and_one_for_depth():
    router = _router()
    assert [h.out_features for h in router.predictor.width] == [2, 8]
    assert router.predictor.depth.out_features == 2
    out = router.predict(torch.randn(5, 6))
    assert out.shape == (5, LAYOUT.dim) == (5, 12)
    # the depth head writes the last entries, each width head its own slice
    x = torch.randn(1, 6)
    torch.testing.assert_close(router.predict(x)[:, 10:], router.predictor.depth(x))
    torch.testing.assert_close(router.predict(x)[:, 2:10], router.predictor.width[1](x))


def test_codes_start_with_every_gate_open_and_decode_per_group():
    router = _router()
    masks = router.code_masks(1)
    assert {k: tuple(v.shape) for k, v in masks.items()} == {"attn": (2,), "resnet": (8,), "skip0": (1,), "skip1": (1,)}
    assert all(bool(m.all()) for m in masks.values())
    logits = router.decode(router.codes.detach())
    torch.testing.assert_close(logits["resnet"], router.codes.detach()[:, 2:10] + router.config.offset)


def test_router_argmax_assignment_is_deterministic_and_survives_save_load(tmp_path):
    router = _router(n=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # distinct architectures, and prompts that predict different ones
        for p in router.parameters():
            p.normal_(0, 4, generator=g)
    prompts = torch.nn.functional.normalize(torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    first = router.route(prompts)
    assert torch.equal(first, router.route(prompts))
    assert torch.equal(first, router.similarity(prompts).argmax(1))
    assert len(first.unique()) > 1
    save_router(router, tmp_path)
    assert torch.equal(load_router(tmp_path).route(prompts), first)


def test_router_rejects_fewer_than_one_code():
    with pytest.raises(ValueError, match="n_codes must be >= 1"):
        _router(n=0)


def test_same_seed_builds_the_same_router():
    a, b = _router(seed=3), _router(seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_prompt_encoder_mean_pools_to_unit_vectors_that_separate_topics():
    enc = PromptEncoder("minilm")
    e = enc(["a red circle with stripes", "a red circle, striped style", "a blue square with dots"])
    assert e.shape == (3, enc.dim) == (3, 384)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    # mean pooling by hand over the real tokens of the first prompt
    tokens = enc.tokenizer(["a red circle with stripes"], return_tensors="pt")
    hidden = enc.model(**tokens).last_hidden_state
    torch.testing.assert_close(e[0], torch.nn.functional.normalize(hidden.mean(1)[0], dim=0), atol=1e-5, rtol=0)
    assert e[0] @ e[1] > e[0] @ e[2]
