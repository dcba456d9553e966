"""ESD: the target is the published formula, each mode produces the target it claims, partial
sampling is the guided DDIM loop stopped early, and only the chosen parameter subset is trained."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from diffusers import DDIMScheduler

from pruneforget.models.tiny import build_unet
from pruneforget.unlearn.esd_step import EsdBatch, esd_goal, esd_step_loss, in_subset, subset_parameters
from pruneforget.unlearn.xt import PartialSampler

UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "attention_heads": [2, 2], "norm_num_groups": 4}


def small_unet(seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(UNET, latent_size=8, latent_channels=4, cross_attention_dim=384).eval()


def random_batch(seed: int = 1) -> EsdBatch:
    g = torch.Generator().manual_seed(seed)
    return EsdBatch(
        x_t=torch.randn(2, 4, 8, 8, generator=g),
        t=torch.tensor([500, 40]),
        cond=torch.randn(2, 6, 384, generator=g),
        reference=torch.randn(2, 6, 384, generator=g),
    )


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_negative_guidance_target_is_the_published_formula(eta):
    frozen, batch = small_unet(), random_batch()
    with torch.no_grad():
        f_ref = frozen(batch.x_t, batch.t, batch.reference).sample
        f_c = frozen(batch.x_t, batch.t, batch.cond).sample
    by_hand = f_ref - eta * (f_c - f_ref)
    for target in ("empty", "anchor_guidance"):  # the formula is the same, only the reference differs
        torch.testing.assert_close(esd_goal(frozen, batch, target, eta), by_hand, rtol=1e-4, atol=1e-5)


def test_anchor_target_is_the_frozen_prediction_for_the_anchor():
    frozen, batch = small_unet(), random_batch()
    with torch.no_grad():
        f_anchor = frozen(batch.x_t, batch.t, batch.reference).sample
    torch.testing.assert_close(esd_goal(frozen, batch, "anchor", eta=1.0), f_anchor)


def test_step_loss_is_mse_to_the_goal_and_only_the_trained_model_gets_gradients():
    unet, frozen, batch = small_unet(0), small_unet(1).requires_grad_(False), random_batch()
    loss = esd_step_loss(unet, frozen, batch, target="empty", eta=1.0)
    with torch.no_grad():
        f_ref = frozen(batch.x_t, batch.t, batch.reference).sample
        f_c = frozen(batch.x_t, batch.t, batch.cond).sample
        pred = unet(batch.x_t, batch.t, batch.cond).sample
    by_hand = ((pred - (2 * f_ref - f_c)) ** 2).mean()
    torch.testing.assert_close(loss.detach(), by_hand, rtol=1e-4, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in unet.parameters() if p.requires_grad)


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="unknown ESD target"):
        esd_goal(small_unet(), random_batch(), "negative", 1.0)


def test_parameter_subsets_follow_esd():
    unet = small_unet()
    x = subset_parameters(unet, "xattn")
    u = subset_parameters(unet, "noxattn")
    full = subset_parameters(unet, "full")
    assert x and all(".attn2." in n for n in x)
    assert not any(".attn1." in n for n in x)
    assert not any("attn2" in n or n.startswith(("time_embedding.", "conv_out.", "conv_norm_out.")) for n in u)
    assert any(".attn1." in n for n in u) and any("resnets" in n for n in u)
    assert len(full) == len(list(unet.parameters()))
    assert not set(x) & set(u)
    with pytest.raises(ValueError, match="unknown ESD parameter subset"):
        in_subset("conv_in.weight", "cross")


def _owned_by(unet, types) -> set[str]:
    """Names of the parameters that modules of `types` own directly."""
    return {f"{path}.{n}" for path, m in unet.named_modules() if isinstance(m, types)
            for n, _ in m.named_parameters(recurse=False)}


def test_authors_esd_u_trains_linear_and_conv_outside_attn2_and_compvis_trains_norms_instead():
    unet = small_unet()
    compvis = set(subset_parameters(unet, "noxattn", "compvis"))
    authors = set(subset_parameters(unet, "noxattn", "authors"))
    norms = _owned_by(unet, (torch.nn.GroupNorm, torch.nn.LayerNorm))
    assert not any(".attn2." in f".{n}" for n in authors)
    assert authors == {n for n in _owned_by(unet, (torch.nn.Linear, torch.nn.Conv2d)) if ".attn2." not in f".{n}"}
    # What the two forms disagree on, exactly: the norms (CompVis trains them, but not conv_norm_out),
    # and the time embedding and conv_out (the authors' port trains them).
    assert compvis - authors == {n for n in norms if ".attn2." not in n and not n.startswith("conv_norm_out.")}
    assert authors - compvis == {n for n in authors if n.startswith(("time_embedding.", "conv_out."))}
    assert {"time_embedding.linear_1.weight", "conv_out.weight", "conv_in.weight"} <= authors
    # xattn and full have one form
    assert set(subset_parameters(unet, "xattn", "authors")) == set(subset_parameters(unet, "xattn"))
    with pytest.raises(ValueError, match="not one of"):
        subset_parameters(unet, "noxattn", "diffusers")


def test_authors_esd_u_trains_the_bias_a_pruned_stand_in_keeps_and_the_upper_objective_uses_the_form():
    from pruneforget.models.expert_modules import ConstantOutput, replace_module
    from pruneforget.unlearn.upper import UpperContext, build_upper

    unet = small_unet()
    block = next(p for p, m in unet.named_modules() if p.endswith("transformer_blocks.0"))
    ff = unet.get_submodule(f"{block}.ff")
    replace_module(unet, f"{block}.ff", ConstantOutput(ff.net[2].out_features, ff.net[2].bias))  # every unit removed
    attn2 = unet.get_submodule(f"{block}.attn2")
    replace_module(unet, f"{block}.attn2", ConstantOutput(attn2.to_out[0].out_features, attn2.to_out[0].bias))
    authors = subset_parameters(unet, "noxattn", "authors")
    assert f"{block}.ff.bias" in authors and f"{block}.attn2.bias" not in authors
    ctx = UpperContext(small_unet(1), "empty", 1.0, lambda positions: {})
    for form in ("compvis", "authors"):
        upper = build_upper("esdu", unet, ctx, {"noxattn_form": form})
        assert set(upper.params) == set(subset_parameters(unet, "noxattn", form))


def test_partial_sampling_is_the_guided_ddim_loop_stopped_early(tiny_pipe):
    unet = tiny_pipe.unet.eval()
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(1, 16, 384, generator=g), torch.randn(1, 16, 384, generator=g)
    sampler = PartialSampler(tiny_pipe, steps=10, guidance=3.0)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    x_t, t = sampler(unet, cond, uncond, stop=4, noise=noise)

    ddim = DDIMScheduler.from_config({**tiny_pipe.scheduler.config, "clip_sample": False})
    ddim.set_timesteps(10)
    x = noise.clone()
    with torch.no_grad():
        for step in ddim.timesteps[:4]:
            f_u = unet(x, step, uncond).sample
            f_c = unet(x, step, cond).sample
            x = ddim.step(f_u + 3.0 * (f_c - f_u), step, x).prev_sample
    torch.testing.assert_close(x_t, x, rtol=1e-4, atol=1e-5)
    assert t.tolist() == [int(ddim.timesteps[4])]
    with pytest.raises(ValueError, match="stop must be in 1..9"):
        sampler(unet, cond, uncond, stop=10, noise=noise)


PAIRS = {
    "stripes": (("a red circle", "a red circle in the style of stripes"), ("a blue star", "a blue star in the style of stripes")),
    "dots": (("a red circle", "a red circle in the style of dots"),),
}
ESD = {"target": "empty", "eta": 1.0, "lr": 1e-3, "steps": 2, "batch_size": 1, "sample_steps": 3, "guidance": 3.0,
       "anchor": "plain", "subset": {"artists": "xattn", "global": "noxattn"}, "noxattn_form": "compvis", "prompts": {"artists": "pairs", "global": "pairs"},
       "adversarial_steps": 2, "adversarial_epsilon": 0.1,
       "log_every": 1}


def changed_parameters(before: dict, unet) -> set[str]:
    return {n for n, p in unet.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize("method", ["esdx", "esdu", "esd"])
def test_only_the_chosen_subset_changes(tiny_pipe, tmp_path, method):
    from pruneforget.unlearn.concepts import ConceptSet
    from pruneforget.unlearn.esd import method_params, unlearn

    params = method_params(ESD, method, "global")  # esd on the global setting: noxattn
    before = {n: p.detach().clone() for n, p in tiny_pipe.unet.named_parameters()}
    unlearn(tiny_pipe, ConceptSet(erase=("stripes", "dots"), pairs=PAIRS), params, seed=0, work_dir=tmp_path)
    changed = changed_parameters(before, tiny_pipe.unet)
    assert changed
    if method == "esdx":
        assert all(".attn2." in n for n in changed)
    else:
        assert not any("attn2" in n for n in changed)
        assert not any(n.startswith(("time_embedding.", "conv_out.", "conv_norm_out.")) for n in changed)
    log = pd.read_csv(tmp_path / "metrics.csv")
    assert log["step"].tolist() == [1, 2] and set(log["objective"]) == {"esd"} and log["esd"].notna().all()
    assert json.loads((tmp_path / "cost.json").read_text())["objectives"]["esd"]["steps"] == 2


def test_esd_prompts_pair_each_concept_prompt_with_its_anchor():
    from pruneforget.unlearn.concepts import ConceptSet
    from pruneforget.unlearn.esd import esd_prompts

    concepts = ConceptSet(erase=("stripes", "dots"), pairs=PAIRS)
    assert esd_prompts(concepts, "pairs", "plain") == [
        [("a red circle in the style of stripes", "a red circle in the style of plain"),
         ("a blue star in the style of stripes", "a blue star in the style of plain")],
        [("a red circle in the style of dots", "a red circle in the style of plain")],
    ]
    assert esd_prompts(concepts, "name", "art") == [[("stripes", "art")], [("dots", "art")]]
    nudity = ConceptSet(erase=("nudity",), pairs={"a photo of a naked {subject}": (("a photo of a man", "a photo of a naked man"),)})
    assert esd_prompts(nudity, "pairs", "plain") == [[("a photo of a naked man", "a photo of a man")]]


@pytest.mark.parametrize("target", ["empty", "anchor_guidance", "anchor"])
def test_prompt_pool_references_follow_the_target_mode(tiny_pipe, target):
    from pruneforget.models.diffusion import encode_captions
    from pruneforget.unlearn.esd import prompt_pool

    groups = [[("a red circle in the style of stripes", "a red circle in the style of plain")]]
    pool = prompt_pool(tiny_pipe, groups, target)
    c, anchor, empty = encode_captions(tiny_pipe, ["a red circle in the style of stripes", "a red circle in the style of plain", ""])
    torch.testing.assert_close(pool.cond[0][0], c)
    torch.testing.assert_close(pool.reference[0][0], empty if target == "empty" else anchor)
    torch.testing.assert_close(pool.uncond, empty)


def test_bad_esd_params_fail_before_work(tiny_pipe):
    from pruneforget.unlearn.concepts import ConceptSet, UnlearnInputError
    from pruneforget.unlearn.esd import method_params, unlearn

    concepts = ConceptSet(erase=("stripes",), pairs=PAIRS)
    for bad, match in [({"target": "negative"}, "target"), ({"subset": "attn"}, "subset"), ({"sample_steps": 1}, "sample_steps"),
                       ({"noxattn_form": "diffusers"}, "noxattn_form")]:
        params = {**method_params(ESD, "esdx", "artists"), **bad}
        with pytest.raises(UnlearnInputError, match=match):
            unlearn(tiny_pipe, concepts, params)


@pytest.mark.parametrize("method, subset, upper", [("esd", "xattn", "esdx"), ("esdall", "full", "esdall"),
                                                   ("esdadv", "full", "esd-adversarial")])
def test_unlearn_command_runs_esd_and_records_the_resolved_parameters(tiny_pipe, tmp_path, method, subset, upper):
    from pruneforget.cli import main
    from pruneforget.io import write_json
    from pruneforget.models.load import load_pipeline

    tiny_pipe.save_pretrained(tmp_path / "model")
    write_json(tmp_path / "data" / "world.json",
               {"kind": "tiny", "labels": {"shape": ["circle"], "colour": ["red", "blue"], "style": ["plain", "stripes"]}})
    config = {"artists": {"concepts": ["stripes"], "guide": "plain", "preserve": [],
                          "prompt_pairs": {"subjects": "world", "base": "a {subject}", "target": "a {subject} in the style of {concept}"}},
              "esd": ESD}
    out = tmp_path / "esd-artists-s1"
    main(["unlearn", "--method", method, "--setting", "artists", "--model", str(tmp_path / "model"), "--data",
          str(tmp_path / "data"), "--params", json.dumps(config), "--seed", "1", "--out", str(out)])
    record = json.loads((out / "unlearn.json").read_text())
    assert record["params"]["subset"] == subset and record["params"]["prompts"] == "pairs"
    assert record["params"]["upper"] == upper  # esdadv: the bilevel run's adversarial upper level, two-stage
    assert record["stats"]["prompts"] == 2  # red circle, blue circle
    assert (out / "metrics.csv").exists() and (out / "cost.json").exists()
    edited = load_pipeline(out).unet.state_dict()
    changed = {k for k, v in tiny_pipe.unet.state_dict().items() if not torch.equal(v, edited[k])}
    assert changed
    if subset == "xattn":
        assert all(".attn2." in k for k in changed)
    else:
        assert any(".attn2." not in k for k in changed)
