"""The bilevel method (Algorithm 1): the upper step's gradient is grad upper + lambda grad L_ft,
the schedule takes K lower steps per upper step with the right optimizer, separate mode keeps
vartheta out of the upper step, a resumed run continues inside its K-cycle exactly, bad
settings fail before any work, and the upper step's gradient holds on the SD 2.1 UNet.
(The command and rules: test_bilevel_command.py.)"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from diffusers import DDPMScheduler

from pruneforget.bilevel.algorithm import (
    BilevelInputError,
    BilevelSettings,
    bilevel_objectives,
    penalised_upper_terms,
    split_batch,
    train_bilevel,
)
from pruneforget.train.batches import LatentTextPairs
from pruneforget.train.finetune import distillation_terms
from pruneforget.train.losses import diffusion_loss
from pruneforget.train.objective import LoopSettings, objective_step_counts
from pruneforget.unlearn.upper import UpperContext, build_upper
from pruneforget.unlearn.xt import ConceptPrompts, NoisedConceptImages, PartialSampler, PromptPool

FT = {"snr_gamma": 5.0, "loss_weights": {"diff": 1.0, "out_kd": 2.0, "feat_kd": 0.1}, "lr_schedule": "constant",
      "betas": [0.9, 0.999], "weight_decay": 0.0, "max_grad_norm": None}
BILEVEL = {"mode": "shared", "k": 2, "lam": 10.0, "snr_form": "diffusers", "counting": "paper", "steps": 7, "lower_lr": 1e-3, "upper_lr": 5e-3, "warmup_steps": 0,
           "upper": {"method": "esdx", "x_t": "images", "target_model": "teacher"}}


def settings(**kw) -> BilevelSettings:
    upper = {**BILEVEL["upper"], **kw.pop("upper", {})}
    return BilevelSettings.from_config({**BILEVEL, **kw, "upper": upper})


@pytest.fixture()
def parts(tiny_pipe):
    """theta (the tiny pipeline's UNet), a perturbed teacher, D_f batches and concept-image batches."""
    torch.manual_seed(3)
    theta = tiny_pipe.unet
    teacher = copy.deepcopy(theta)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.02 * torch.randn_like(p))
    scheduler = DDPMScheduler.from_config(tiny_pipe.scheduler.config)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(3, 16, 384, generator=g)
    ft = LatentTextPairs(torch.randn(6, 4, 8, 8, generator=g), 0.1 * torch.ones(6, 4, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1]),
                         text, 2, 1.0, scheduler, seed=0)
    images = NoisedConceptImages(scheduler, torch.randn(4, 4, 8, 8, generator=g), 0.1 * torch.ones(4, 4, 8, 8), 1.0,
                                 torch.randn(4, 16, 384, generator=g), torch.randn(4, 16, 384, generator=g), seed=1)
    ctx = UpperContext(teacher, "empty", 1.0, images)
    return {"pipe": tiny_pipe, "theta": theta, "teacher": teacher, "scheduler": scheduler, "ft": ft, "ctx": ctx}


def ft_loss(parts):
    return lambda model, batch: distillation_terms(model, parts["teacher"], batch, parts["scheduler"], FT["snr_gamma"],
                                                   FT["loss_weights"])


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("lam", [100.0, 0.0])
def test_upper_step_gradient_is_grad_upper_plus_lambda_grad_ft(parts, lam):
    s = settings(lam=lam, upper={"method": "esdall"})
    theta = parts["theta"]
    upper = build_upper("esdall", theta, parts["ctx"], {})
    _, objective = bilevel_objectives(s, theta, None, parts["teacher"], upper, parts["ctx"].batches, parts["ft"],
                                      parts["scheduler"], FT)
    batch = objective.batches(range(0, 2))
    params = list(upper.params.values())
    got = grads(objective.loss({"unet": theta}, batch)["total"], params)

    u_batch = {k[2:]: v for k, v in batch.items() if k.startswith("u.")}
    g_upper = grads(upper.loss(theta, u_batch), params)
    if lam:
        ft_batch = {k[3:]: v for k, v in batch.items() if k.startswith("ft.")}
        g_ft = grads(ft_loss(parts)(theta, ft_batch)["total"], params)
        expected = [a + lam * b for a, b in zip(g_upper, g_ft)]
    else:  # lambda 0: the ESD gradient alone, and no fine-tuning batch is even drawn
        assert not any(k.startswith("ft.") for k in batch)
        expected = g_upper
    scale = max(float(e.abs().max()) for e in expected)  # summation order differs: float32 rounding only
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_separate_mode_uses_theta_in_its_penalty_term_and_leaves_vartheta_out(parts):
    theta = parts["theta"]
    vartheta = copy.deepcopy(theta)
    with torch.no_grad():
        for p in vartheta.parameters():
            p.add_(0.01)
    upper = build_upper("esdall", theta, parts["ctx"], {})
    u_batch, ft_batch = parts["ctx"].batches(range(2)), parts["ft"](range(2))
    terms = penalised_upper_terms(theta, vartheta, upper, ft_loss(parts), 100.0, u_batch, ft_batch)
    terms["total"].backward()
    assert all(p.grad is None for p in vartheta.parameters())
    ft_theta = ft_loss(parts)(theta, ft_batch)["total"].detach()
    ft_vartheta = ft_loss(parts)(vartheta, ft_batch)["total"].detach()
    torch.testing.assert_close(terms["ft_theta"], ft_theta)
    torch.testing.assert_close(terms["penalty"], ft_theta - ft_vartheta)
    torch.testing.assert_close(terms["G"], terms["upper"].detach() + 100.0 * (ft_theta - ft_vartheta))
    got = [p.grad.clone() for p in theta.parameters()]
    expected = grads(upper.loss(theta, u_batch) + 100.0 * ft_loss(parts)(theta, ft_batch)["total"], list(theta.parameters()))
    scale = max(float(e.abs().max()) for e in expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5 * scale)


def loop(steps: int, **kw) -> LoopSettings:
    return LoopSettings(**{"steps": steps, "micro_batch_size": 2, "log_every": 1, "progress": False, **kw})


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_schedule_takes_k_lower_steps_per_upper_step_with_its_own_optimizer(parts, tmp_path, monkeypatch, mode):
    s = settings(mode=mode, steps=7, k=2)
    theta, changes = parts["theta"], []
    models = {}
    last = {"unet": snapshot(theta)}

    def record(step, row):  # which parameters of which model moved in this step
        now = {"unet": snapshot(theta)}
        if "vartheta" in models:
            now["vartheta"] = snapshot(models["vartheta"])
        moved = {m: {n for n in now[m] if m in last and not torch.equal(now[m][n], last[m][n])} for m in now}
        changes.append((row["objective"], row["lr"], moved))
        last.update(now)

    import pruneforget.bilevel.algorithm as bilevel

    original = bilevel.train

    def capture(objectives, schedule, model_map, *a, **kw):
        models.update(model_map)
        if "vartheta" in model_map:
            last["vartheta"] = snapshot(model_map["vartheta"])
        return original(objectives, schedule, model_map, *a, **kw)

    monkeypatch.setattr(bilevel, "train", capture)  # to see vartheta, which train_bilevel makes inside
    cost = train_bilevel(s, theta, parts["teacher"], parts["ctx"], {}, parts["ft"], parts["scheduler"], FT,
                         loop(7), tmp_path, on_step_end=record)
    order = ["lower", "lower", "upper"] * 2 + ["lower"]
    assert [c[0] for c in changes] == order
    assert pd.read_csv(tmp_path / "metrics.csv")["objective"].tolist() == order
    assert {k: v["steps"] for k, v in cost["objectives"].items()} == {"lower": 5, "upper": 2}
    for objective, lr, moved in changes:
        assert lr == (1e-3 if objective == "lower" else 5e-3)
        if objective == "upper":  # ESD-x: only theta's cross-attention moves
            assert moved["unet"] and all(".attn2." in n for n in moved["unet"])
            assert not moved.get("vartheta")
        elif mode == "shared":
            assert any("attn2" not in n for n in moved["unet"])
        else:  # separate: lower steps train vartheta only
            assert not moved["unet"] and moved["vartheta"]
    if mode == "separate":
        log = pd.read_csv(tmp_path / "metrics.csv")
        assert log.loc[log["objective"] == "upper", "penalty"].notna().all()


@pytest.mark.parametrize("steps, k", [(20000, 20), (400, 3), (7, 2), (45, 40)])
def test_total_iterations_count_lower_and_upper_steps_together(steps, k):
    from pruneforget.bilevel.algorithm import schedule

    counts = objective_step_counts(schedule(k), 0, steps)
    assert counts["upper"] == steps // (k + 1) and counts["lower"] + counts["upper"] == steps


@pytest.mark.parametrize("steps, k, lower, upper", [(50000, 10, 50000, 5000), (300, 10, 300, 30), (7, 2, 7, 3)])
def test_authors_counting_runs_steps_lower_steps_and_an_upper_step_after_every_kth(steps, k, lower, upper):
    from pruneforget.bilevel.algorithm import schedule

    s = settings(steps=steps, k=k, counting="authors")
    assert s.loop_steps == lower + upper
    assert objective_step_counts(schedule(k), 0, s.loop_steps) == {"lower": lower, "upper": upper}
    assert settings(steps=steps, k=k, counting="paper").loop_steps == steps  # paper: both counted together


def test_authors_counting_trains_for_its_loop_steps_and_refuses_a_paper_length_loop(parts, tmp_path):
    s = settings(steps=4, k=2, counting="authors", lam=0.0)
    with pytest.raises(BilevelInputError, match="counting authors: 6 loop steps"):
        train_bilevel(s, parts["theta"], parts["teacher"], parts["ctx"], {}, parts["ft"], parts["scheduler"], FT,
                      loop(4), tmp_path / "short")
    cost = train_bilevel(s, parts["theta"], parts["teacher"], parts["ctx"], {}, parts["ft"], parts["scheduler"], FT,
                         loop(6), tmp_path / "run")
    assert {k: v["steps"] for k, v in cost["objectives"].items()} == {"lower": 4, "upper": 2}
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["objective"].tolist() == ["lower", "lower", "upper"] * 2


@pytest.mark.parametrize("form", ["diffusers", "authors"])
def test_lower_steps_weigh_l_diff_with_the_bilevel_snr_form(parts, form):
    s = settings(snr_form=form)
    theta = parts["theta"]
    upper = build_upper("esdall", theta, parts["ctx"], {})
    lower, _ = bilevel_objectives(s, theta, None, parts["teacher"], upper, parts["ctx"].batches, parts["ft"],
                                  parts["scheduler"], FT)
    batch = lower.batches(range(0, 2))
    got = lower.loss({"unet": theta}, batch)
    with torch.no_grad():
        pred = theta(batch["noisy"], batch["timesteps"], batch["text"]).sample
    by_hand = diffusion_loss(pred, batch["target"], batch["timesteps"], parts["scheduler"], FT["snr_gamma"], form)
    torch.testing.assert_close(got["diff"].detach(), by_hand, rtol=1e-5, atol=1e-7)
    other = "authors" if form == "diffusers" else "diffusers"
    assert not torch.allclose(got["diff"].detach(), diffusion_loss(pred, batch["target"], batch["timesteps"],
                                                                  parts["scheduler"], FT["snr_gamma"], other))


class Crash(RuntimeError):
    pass


def test_resume_mid_cycle_reproduces_an_uninterrupted_run(parts, tmp_path):
    """Separate mode with partial sampling: killed after step 4 of K = 2 cycles (one step into a
    cycle), resumed from the step-4 checkpoint, it ends exactly where an uninterrupted run ends."""
    pipe, theta = parts["pipe"], parts["theta"]
    g = torch.Generator().manual_seed(5)
    pool = PromptPool([torch.randn(2, 16, 384, generator=g)], [torch.randn(2, 16, 384, generator=g)],
                      torch.randn(16, 384, generator=g))
    ctx = UpperContext(parts["teacher"], "anchor_guidance", 1.0, ConceptPrompts(pool, (4, 8, 8), 4, seed=2),
                       PartialSampler(pipe, steps=4, guidance=3.0))
    s = settings(mode="separate", steps=7, k=2, upper={"x_t": "sample"})
    start = snapshot(theta)

    def run(work, hook=None):
        with torch.no_grad():
            for n, p in theta.named_parameters():
                p.copy_(start[n])
        train_bilevel(s, theta, parts["teacher"], ctx, {}, parts["ft"], parts["scheduler"], FT,
                      loop(7, checkpoint_every=2), work, on_step_end=hook)
        return snapshot(theta)

    full = run(tmp_path / "full")

    def crash(step, row):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        run(tmp_path / "cut", crash)
    resumed = run(tmp_path / "cut")
    for n in full:
        torch.testing.assert_close(resumed[n], full[n], rtol=0, atol=0, msg=n)
    assert any(not torch.equal(full[n], start[n]) for n in full)
    a, b = pd.read_csv(tmp_path / "full" / "metrics.csv"), pd.read_csv(tmp_path / "cut" / "metrics.csv")
    assert a["objective"].tolist() == b["objective"].tolist()
    pd.testing.assert_series_equal(a["total"], b["total"])


@pytest.mark.parametrize("change, match", [
    ({"k": 0}, "bilevel.k"),
    ({"lam": -1.0}, "bilevel.lam"),
    ({"upper": {"method": "forget-everything"}}, "bilevel.upper.method"),
    ({"mode": "both"}, "bilevel.mode"),
    ({"upper": {"x_t": "noise"}}, "bilevel.upper.x_t"),
    ({"steps": 2, "k": 5}, "bilevel.steps"),
    ({"counting": "both"}, "bilevel.counting"),
    ({"snr_form": "min"}, "bilevel.snr_form"),
])
def test_bad_settings_are_rejected_naming_the_key(change, match):
    with pytest.raises(BilevelInputError, match=match):
        settings(**copy.deepcopy(change))


# --- the `bilevel` command on a tiny random world -------------------------------------------

def test_saliency_masked_upper_step_changes_only_the_most_salient_weights(parts, tmp_path):
    """Separate mode, so theta moves by upper steps only: every entry that moved is in the mask,
    and the mask keeps the requested share of weights."""
    theta = parts["theta"]
    start = snapshot(theta)
    upper_cfg = {"batch_size": 2, "saliency_fraction": 0.02, "saliency_batches": 2}
    upper = build_upper("esd-saliency", theta, parts["ctx"], upper_cfg)
    total = sum(p.numel() for p in theta.parameters())
    kept = sum(int(m.sum()) for _, m in upper.grad_masks)
    assert kept == pytest.approx(0.02 * total, rel=0.01)
    masks = {id(p): m for p, m in upper.grad_masks}
    s = settings(mode="separate", steps=6, k=1, upper={"method": "esd-saliency"})
    train_bilevel(s, theta, parts["teacher"], parts["ctx"], upper_cfg, parts["ft"], parts["scheduler"], FT, loop(6), tmp_path)
    moved = 0
    for n, p in theta.named_parameters():
        changed = p.detach() != start[n]
        assert not (changed & (masks[id(p)] == 0)).any(), n
        moved += int(changed.sum())
    assert moved > 0.5 * kept


def test_paper_scale_upper_step_on_the_sd21_unet_is_grad_esdx_plus_lambda_grad_ft():
    """The paper's path: Algorithm 1's upper step on the Stable Diffusion 2.1 UNet (random weights,
    8 x 8 latents, v-prediction, 1024-d text), with the paper's lambda = 100 and ESD-x's
    cross-attention parameters. Eq. 8's feature KD hooks SD 2.1's nine blocks."""
    from sd21_random import random_sd21_unet

    theta = random_sd21_unet(sample_size=8, seed=0).train()
    # A teacher unlike the student (other random weights), so both distillation terms have a gradient.
    teacher = random_sd21_unet(sample_size=8, seed=1).requires_grad_(False)
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    g = torch.Generator().manual_seed(0)
    dim = theta.config.cross_attention_dim
    ft = LatentTextPairs(torch.randn(2, 4, 8, 8, generator=g), 0.1 * torch.ones(2, 4, 8, 8), torch.tensor([0, 1]),
                         torch.randn(3, 8, dim, generator=g), 2, 0.18215, scheduler, seed=0)
    images = NoisedConceptImages(scheduler, torch.randn(1, 4, 8, 8, generator=g), 0.1 * torch.ones(1, 4, 8, 8), 0.18215,
                                 torch.randn(1, 8, dim, generator=g), torch.randn(1, 8, dim, generator=g), seed=1)
    ctx = UpperContext(teacher, "empty", 1.0, images)
    s = settings(lam=100.0, k=20, steps=21, upper={"method": "esdx"})
    upper = build_upper("esdx", theta, ctx, {})
    assert upper.params and all(".attn2." in n for n in upper.params)  # ESD-x: cross-attention only
    # The gradient checked on the last cross-attention of the UNet (a part of ESD-x's parameters):
    # autograd then walks back only from the output to that block, not through all 866M parameters
    # three times (194 s of CI otherwise); the equation is the same for every parameter.
    last = max(int(n.split(".")[1]) for n in upper.params if n.startswith("up_blocks."))
    checked = {n: p for n, p in upper.params.items() if n.startswith(f"up_blocks.{last}.attentions.2.")}
    assert checked
    theta.requires_grad_(False)
    for p in checked.values():
        p.requires_grad_(True)
    _, objective = bilevel_objectives(s, theta, None, teacher, upper, images, ft, scheduler, FT)
    batch = objective.batches([0])
    params = list(checked.values())
    got = grads(objective.loss({"unet": theta}, batch)["total"], params)
    g_upper = grads(upper.loss(theta, split_batch(batch, "u.")), params)
    g_ft = grads(distillation_terms(theta, teacher, split_batch(batch, "ft."), scheduler, FT["snr_gamma"],
                                    FT["loss_weights"])["total"], params)
    expected = [a + 100.0 * b for a, b in zip(g_upper, g_ft)]
    assert any(float(b.abs().max()) > 0 for b in g_ft)  # the fine-tuning term reaches the cross-attention
    scale = max(float(e.abs().max()) for e in expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("config", ["config.yaml", "micro.yaml", "sd21.yaml", "sd21_smoke.yaml"])
def test_the_code_variant_takes_every_authors_form_and_the_paper_variant_none(config):
    from pathlib import Path

    import yaml

    from pruneforget.bilevel.inputs import run_params

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / config).read_text())
    code, paper = run_params(cfg["bilevel"], "code"), run_params(cfg["bilevel"], "paper")
    assert (code["snr_form"], code["counting"], code["upper"]["noxattn_form"], code["lam"]) == ("authors", "authors", "authors", 0.0)
    assert (paper["snr_form"], paper["counting"], paper["upper"]["noxattn_form"]) == ("diffusers", "paper", None)
    assert BilevelSettings.from_config(code).loop_steps == code["steps"] + code["steps"] // code["k"]
    # the defaults elsewhere are the paper's forms
    assert cfg["finetune"]["snr_form"] == cfg["prune"]["aptp"]["snr_form"] == "diffusers"
    assert (cfg["prune"]["aptp"]["contrastive"], cfg["prune"]["aptp"]["gumbel"]) == ("bce", "logistic")
    assert cfg["unlearn"]["esd"]["noxattn_form"] == "compvis"
