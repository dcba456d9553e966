"""ConceptPrune: the skilled-weight mask follows its definition (checked by hand), the hooks see every
row of every step, and exactly the masked weights are zeroed: at most k per row and step."""

from __future__ import annotations

import copy

import torch

from pruneforget.unlearn import conceptprune as cp
from pruneforget.unlearn.concepts import ConceptSet
from pruneforget.unlearn.prompts import prompt_pairs

PARAMS = {"skill_ratio": 0.01, "select_ratio": 0.0, "scheduler": "ddim", "steps": 2, "guidance": 5.0, "batch_size": 4}
STYLES = ["stripes", "dots"]
CONCEPTS = ConceptSet(erase=tuple(STYLES), pairs=prompt_pairs(
    "a {subject}", "a {subject} in the style of {concept}", ["red circle", "blue square"], STYLES))


def test_skilled_weights_follow_the_definition_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5], [4.0, 1.0, -1.0, 2.0]])
    target = torch.tensor([1.0, 1.0, 1.0, 3.0])
    base = torch.tensor([2.0, 0.0, 1.0, 0.0])
    # Target scores |W| * ||X||: row 0 [1, 2, 3, 1.5] -> top-2 {2, 1}; row 1 [4, 1, 1, 6] -> top-2 {3, 0}.
    # Base scores: row 0 [2, 0, 3, 0]; row 1 [8, 0, 1, 0]. Beating base: row 0 col 1 (2 > 0), not col 2
    # (3 = 3); row 1 col 3 (6 > 0), not col 0 (4 < 8).
    expected = torch.tensor([[False, True, False, False], [False, False, False, True]])
    assert torch.equal(cp.skilled_weights(w, target, base, k=2), expected)
    assert not cp.skilled_weights(w, target, base, k=0).any()


def test_union_over_steps_and_the_select_ratio_by_hand():
    w = torch.ones(1, 3)
    base = torch.zeros(3, 3)
    target = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [3.0, 1.0, 2.0]])  # top-1: col 0, 1, 0
    assert cp.union_over_steps(w, target, base, k=1).tolist() == [[True, True, False]]
    # skilled at more than 0.5 * 3 steps: only column 0 (2 steps)
    assert cp.union_over_steps(w, target, base, k=1, select_ratio=0.5).tolist() == [[True, False, False]]


def test_exactly_k_per_row_when_the_concept_always_beats_the_base():
    torch.manual_seed(0)
    weights = {"a": torch.randn(8, 300), "b": torch.randn(5, 150)}
    base = {n: torch.zeros(1, w.shape[1]) for n, w in weights.items()}
    target = {n: torch.rand(1, w.shape[1]) + 0.1 for n, w in weights.items()}
    masks = cp.concept_masks(weights, base, {"c": target}, skill_ratio=0.01)
    assert masks["a"].sum(1).tolist() == [3] * 8  # k = floor(0.01 * 300)
    assert masks["b"].sum(1).tolist() == [1] * 5
    assert masks["a"].float().mean() == 3 / 300  # the pruned fraction is the skill ratio


def test_at_most_k_per_row_and_step():
    torch.manual_seed(1)
    weights = {"a": torch.randn(6, 200)}
    steps = 4
    base = {"a": torch.rand(steps, 200)}
    target = {"a": torch.rand(steps, 200)}
    per_row = cp.concept_masks(weights, base, {"c": target}, skill_ratio=0.02)["a"].sum(1)
    assert (per_row <= 4 * steps).all() and per_row.sum() > 0


def test_hooks_see_every_row_of_every_step(tiny_pipe):
    """Rows are unit-normalised, so at each step the squared column norms sum to the number of rows:
    prompts x 2 (both guidance halves) x tokens (latent pixels) of the layer."""
    prompts = ["a red circle", "a blue square", "a red square"]
    norms = cp.collect_norms(tiny_pipe, prompts, {**PARAMS, "batch_size": 2}, seed=0)
    scheduler = type(tiny_pipe.scheduler)
    assert set(norms) == set(cp.geglu_outputs(tiny_pipe.unet))
    for name, n in norms.items():
        assert n.shape[0] == PARAMS["steps"]
        tokens = 4 * 4  # every transformer runs at 4x4 (8x8 latents, one downsampling before them)
        torch.testing.assert_close(n.square().sum(1), torch.full((2,), 3.0 * 2 * tokens, dtype=torch.float64))
    assert type(tiny_pipe.scheduler) is scheduler  # the sampler swap is undone


def test_zeroed_weights_are_exactly_the_masked_ones(tiny_pipe):
    layers = cp.geglu_outputs(tiny_pipe.unet)
    weights = {n: l.weight.detach().clone() for n, l in layers.items()}
    before = copy.deepcopy(tiny_pipe.unet.state_dict())
    base = cp.collect_norms(tiny_pipe, ["a red circle", "a blue square"], PARAMS, seed=3)
    targets = {s: cp.collect_norms(tiny_pipe, [p[1] for p in CONCEPTS.pairs[s]], PARAMS, seed=3) for s in STYLES}
    expected = cp.concept_masks(weights, base, targets, PARAMS["skill_ratio"])

    _, stats = cp.unlearn(tiny_pipe, CONCEPTS, PARAMS, seed=3)
    after = tiny_pipe.unet.state_dict()
    for name, w in weights.items():
        new = after[f"{name}.weight"]
        assert torch.equal(new == 0, expected[name]), name
        assert torch.equal(new[~expected[name]], w[~expected[name]]), name
        k = cp.skill_k(w.shape[1], PARAMS["skill_ratio"])
        assert (expected[name].sum(1) <= k * PARAMS["steps"] * len(STYLES)).all()
    for key, value in after.items():
        if not any(key == f"{n}.weight" for n in weights):
            assert torch.equal(value, before[key]), key
    assert stats["zeroed_weights"] == sum(int(m.sum()) for m in expected.values()) > 0
    assert stats["groups"] == {"stripes": 2, "dots": 2}
    assert stats["sampled_prompts"] == 6  # the shared base prompts are sampled once


def test_tiny_pairs_follow_the_world_and_paper_pairs_match_the_shipped_lists(tmp_path):
    from pruneforget.io import write_json
    from pruneforget.unlearn.prompts import concept_set, prompt_subjects
    from pruneforget.world.prompt_sets import PROMPTS_DIR, concept_prune_pairs, load_word_list, nudity_pairs

    write_json(tmp_path / "world.json", {"kind": "tiny", "labels": {"shape": ["circle", "star"], "colour": ["red", "blue"],
                                                                    "style": ["plain", "stripes"]}})
    setting = {"concepts": ["stripes"], "guide": None, "preserve": [],
               "prompt_pairs": {"subjects": "world", "base": "a {subject}", "target": "a {subject} in the style of {concept}"}}
    pairs = concept_set(setting, tmp_path).pairs
    assert pairs == {"stripes": (("a red circle", "a red circle in the style of stripes"),
                                 ("a blue circle", "a blue circle in the style of stripes"),
                                 ("a red star", "a red star in the style of stripes"),
                                 ("a blue star", "a blue star in the style of stripes"))}
    things = load_word_list(PROMPTS_DIR / "things.txt")
    artist = prompt_pairs("a photo of a {subject}", "a {subject} in the style of {concept}", things, ["Claude Monet"])
    assert list(artist["Claude Monet"]) == concept_prune_pairs(things, "Claude Monet")
    humans = prompt_subjects("humans", None)
    naked = prompt_pairs("a photo of a {subject}", "a photo of a naked {subject}", humans, ["nudity", "blood"])
    assert list(naked.values()) == [tuple(nudity_pairs(humans))]  # one group: the target names no concept


def test_skill_k_is_the_published_floor_and_at_least_one_weight_per_row():
    """A ratio tuned on one expert's widths must not select nothing in another expert's narrower layer."""
    assert cp.skill_k(1280, 0.01) == 12 and cp.skill_k(5120, 0.03) == 153  # int(), as published
    assert cp.skill_k(32, 0.03) == 1  # published int(0.96) = 0 would leave the layer untouched
