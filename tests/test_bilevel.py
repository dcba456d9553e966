"""The bilevel method (Algorithm 1): the upper step's gradient is grad upper + lambda grad L_ft,
the schedule takes K lower steps per upper step with the right optimizer, separate mode keeps
vartheta out of the upper step, a resumed run continues inside its K-cycle exactly, and bad
settings fail before any work."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
from diffusers import DDPMScheduler

from pruneforget.train.batches import LatentTextPairs
from pruneforget.train.bilevel import (BilevelInputError, BilevelSettings, bilevel_objectives, penalised_upper_terms,
                                       split_batch, train_bilevel)
from pruneforget.train.finetune import distillation_terms
from pruneforget.train.objective import LoopSettings, objective_step_counts
from pruneforget.train.upper import UpperContext, build_upper
from pruneforget.unlearn.xt import ConceptPrompts, NoisedConceptImages, PartialSampler, PromptPool

FT = {"snr_gamma": 5.0, "loss_weights": {"diff": 1.0, "out_kd": 2.0, "feat_kd": 0.1}, "lr_schedule": "constant",
      "betas": [0.9, 0.999], "weight_decay": 0.0, "max_grad_norm": None}
BILEVEL = {"mode": "shared", "k": 2, "lam": 10.0, "steps": 7, "lower_lr": 1e-3, "upper_lr": 5e-3, "warmup_steps": 0,
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

    import pruneforget.train.bilevel as bilevel

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
    from pruneforget.train.bilevel import schedule

    counts = objective_step_counts(schedule(k), 0, steps)
    assert counts["upper"] == steps // (k + 1) and counts["lower"] + counts["upper"] == steps


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
])
def test_bad_settings_are_rejected_naming_the_key(change, match):
    with pytest.raises(BilevelInputError, match=match):
        settings(**copy.deepcopy(change))


# --- the `bilevel` command on a tiny random world -------------------------------------------

FINETUNE = {
    "steps": 99, "batch_size": 2, "micro_batch_size": 2, "lr": 1e-3, "lr_schedule": "constant_with_warmup",
    "warmup_steps": 0, "betas": [0.9, 0.999], "weight_decay": 0.0, "max_grad_norm": None, "snr_gamma": 5.0,
    "loss_weights": {"diff": 1.0, "out_kd": 2.0, "feat_kd": 0.1}, "caption_dropout": 0.0, "mixed_precision": "no",
    "gradient_checkpointing": False, "precompute": True, "resolution": None, "limit": None, "checkpoint_every": 0,
    "log_every": 1, "eval_every": 0, "fid_reference": None,
    "eval": {"prompts": 2, "sample_steps": 2, "guidance": 3.0, "denoising_images": 2, "timesteps_per_image": 1,
             "batch_size": 2, "seed": 0},
}
PAIRS = {"subjects": "world", "base": "a {subject}", "target": "a {subject} in the style of {concept}"}
UNLEARN = {
    "artists": {"concepts": ["stripes"], "guide": "plain", "preserve": [], "prompt_pairs": PAIRS},
    "global": {"concepts": ["stripes"], "guide": None, "preserve": [], "prompt_pairs": PAIRS},
    "esd": {"target": "empty", "eta": 1.0, "lr": 1e-3, "steps": 2, "batch_size": 1, "sample_steps": 3, "guidance": 3.0,
            "anchor": "plain", "subset": {"artists": "xattn", "global": "noxattn"},
            "prompts": {"artists": "pairs", "global": "pairs"}, "log_every": 1},
}
COMMAND = {
    "mode": "shared", "steps": 3, "k": 2, "lam": 10.0, "lower_lr": 1e-3, "upper_lr": 5e-3, "warmup_steps": 0,
    "eval_every": 3, "checkpoint_every": 0, "log_every": 1,
    "upper": {"method": "esdall", "x_t": "sample", "target_model": "teacher", "target": None, "batch_size": 1,
              "saliency_fraction": 0.1, "saliency_batches": 1},
    "code": {"lam": 0.0, "k": 2, "upper": {"x_t": "images"}},
    "sweep": {"lambdas": [0, 10], "Ks": [2]},
}
STYLES = ["plain", "stripes", "waves"]


def write_world(root):
    """train (every style, with labels), finetune (no stripes or waves), val, world.json."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, styles in (("train", STYLES), ("finetune", ["plain"]), ("val", ["plain", "stripes"])):
        (root / "images" / split).mkdir(parents=True)
        rows = []
        for i, (style, colour) in enumerate([(s, c) for s in styles for c in ("red", "blue")]):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "images" / split / f"{i}.png")
            rows.append({"image": f"images/{split}/{i}.png", "caption": f"a {colour} circle in the style of {style}",
                         "image_id": i, "style": style, "shape": "circle", "colour": colour, "style_word": style})
        pd.DataFrame(rows).to_csv(root / f"{split}.csv", index=False)
    labels = {"style": STYLES, "shape": ["circle"], "colour": ["red", "blue"]}
    (root / "world.json").write_text(json.dumps({"kind": "tiny", "labels": labels}))


@pytest.fixture()
def workspace(tmp_path, tiny_pipe):
    from pruneforget.metrics.evaluator import Evaluator, EvaluatorNet, save_evaluator

    tiny_pipe.save_pretrained(tmp_path / "base")
    tiny_pipe.save_pretrained(tmp_path / "expert")
    write_world(tmp_path / "data")
    torch.manual_seed(0)
    labels = {"style": STYLES, "shape": ["circle"], "colour": ["red", "blue"]}
    save_evaluator(Evaluator(EvaluatorNet({k: len(v) for k, v in labels.items()}, width=4, feature_dim=6), labels,
                             image_size=16), tmp_path / "evaluator")
    return tmp_path


def bilevel_command(ws, out, params=COMMAND, *extra):
    from pruneforget.cli import main

    main(["bilevel", "--expert", str(ws / "expert"), "--teacher", str(ws / "base"), "--data", str(ws / "data"),
          "--evaluator", str(ws / "evaluator"), "--setting", "artists", "--seed", "0", "--params", json.dumps(params),
          "--finetune", json.dumps(FINETUNE), "--unlearn", json.dumps(UNLEARN), "--out", str(ws / out), *extra])


def test_bilevel_command_writes_a_run_directory_and_continues_with_an_added_concept(workspace):
    from pruneforget.models.load import load_pipeline

    bilevel_command(workspace, "bilevel-artists-s0")
    out = workspace / "bilevel-artists-s0"
    for name in ("model_index.json", "metrics.csv", "eval.csv", "cost.json", "run_config.json"):
        assert (out / name).exists(), name
    assert not (workspace / ".bilevel-artists-s0.work").exists() and not (out / "checkpoints").exists()
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["objective"].tolist() == ["lower", "lower", "upper"]
    assert metrics.loc[2, ["upper", "ft_theta", "G"]].notna().all()
    assert pd.read_csv(out / "eval.csv")["step"].tolist() == [0, 3]
    assert {k: v["steps"] for k, v in json.loads((out / "cost.json").read_text())["objectives"].items()} == {"lower": 2, "upper": 1}
    record = json.loads((out / "run_config.json").read_text())
    assert record["concepts"] == ["stripes"] and record["variant"] == "paper" and record["params"]["lam"] == 10.0
    tuned, start = load_pipeline(out).unet.state_dict(), load_pipeline(workspace / "expert").unet.state_dict()
    assert any(not torch.equal(tuned[k], start[k]) for k in start)

    # Continual: from the unlearned model, add waves; stripes stays in the upper objective's list.
    bilevel_command(workspace, "continual", COMMAND, "--expert", str(out), "--add-concept", "waves")
    assert json.loads((workspace / "continual" / "run_config.json").read_text())["concepts"] == ["stripes", "waves"]


def test_authors_variant_runs_from_concept_images_without_a_penalty(workspace):
    bilevel_command(workspace, "bilevelcode-artists-s0", COMMAND, "--variant", "code")
    out = workspace / "bilevelcode-artists-s0"
    record = json.loads((out / "run_config.json").read_text())
    assert record["variant"] == "code" and record["params"]["lam"] == 0.0 and record["params"]["upper"]["x_t"] == "images"
    metrics = pd.read_csv(out / "metrics.csv")
    upper = metrics[metrics["objective"] == "upper"]
    assert len(upper) == 1 and upper["ft_theta"].isna().all()  # lambda 0: no fine-tuning term in the upper step


def test_separate_variant_logs_the_penalty_that_the_penalty_figure_draws(workspace):
    """`--variant separate` trains vartheta as a second copy; every upper step logs the penalty
    L_ft(theta) - L_ft(vartheta), and figures.fig_penalty (the repo's config) plots exactly those."""
    from pathlib import Path

    import yaml

    from pruneforget.report.build import build_figure
    from pruneforget.report.specs import resolve_figure

    params = {**COMMAND, "steps": 6, "eval_every": 0}  # K = 2: two cycles of 2 lower + 1 upper
    bilevel_command(workspace, "bilevelsep-artists-s0", params, "--variant", "separate")
    out = workspace / "bilevelsep-artists-s0"
    record = json.loads((out / "run_config.json").read_text())
    assert record["variant"] == "separate" and record["params"]["mode"] == "separate"
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["objective"].tolist() == ["lower", "lower", "upper"] * 2
    upper = metrics[metrics["objective"] == "upper"]
    assert upper[["ft_theta", "ft_vartheta", "penalty"]].notna().all().all()
    torch.testing.assert_close(torch.tensor(upper["penalty"].values),
                               torch.tensor((upper["ft_theta"] - upper["ft_vartheta"]).values), rtol=0, atol=1e-6)
    # theta saw no lower step: its first L_ft differs from vartheta's, which two lower steps trained.
    assert upper["penalty"].iloc[0] != 0

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    spec = resolve_figure(config, "fig_penalty")
    _, frame = build_figure(spec, runs=[out])
    drawn = frame[frame["metric"] == "penalty"]
    assert drawn["step"].tolist() == upper["step"].tolist()
    assert drawn["mean"].tolist() == pytest.approx(upper["penalty"].tolist())
    assert set(frame["metric"]) == {m["name"] for m in spec["metrics"]}


@pytest.mark.parametrize("extra, params, match", [
    (["--k", "0"], COMMAND, "bilevel.k"),
    (["--lam", "-1"], COMMAND, "bilevel.lam"),
    ([], {**COMMAND, "upper": {**COMMAND["upper"], "method": "forget-everything"}}, "bilevel.upper.method"),
    (["--add-concept", "sparkles"], COMMAND, "'sparkles'.*not styles of the world"),
])
def test_bad_input_fails_before_anything_is_written(workspace, extra, params, match):
    with pytest.raises(SystemExit, match=match):
        bilevel_command(workspace, "bad", params, *extra)
    assert not (workspace / "bad").exists() and not (workspace / ".bad.work").exists()


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
    from pruneforget.models.load import sd21_unet

    torch.manual_seed(0)
    theta = sd21_unet(sample_size=8)
    teacher = copy.deepcopy(theta).requires_grad_(False)
    with torch.no_grad():  # a teacher unlike the student, so both distillation terms have a gradient
        for p in teacher.parameters():
            p.mul_(1.01)
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
    theta.requires_grad_(False)
    for p in upper.params.values():
        p.requires_grad_(True)
    _, objective = bilevel_objectives(s, theta, None, teacher, upper, images, ft, scheduler, FT)
    batch = objective.batches([0])
    params = list(upper.params.values())
    got = grads(objective.loss({"unet": theta}, batch)["total"], params)
    g_upper = grads(upper.loss(theta, split_batch(batch, "u.")), params)
    g_ft = grads(distillation_terms(theta, teacher, split_batch(batch, "ft."), scheduler, FT["snr_gamma"],
                                    FT["loss_weights"])["total"], params)
    expected = [a + 100.0 * b for a, b in zip(g_upper, g_ft)]
    assert any(float(b.abs().max()) > 0 for b in g_ft)  # the fine-tuning term reaches the cross-attention
    scale = max(float(e.abs().max()) for e in expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_bilevel_rules_dry_run_at_paper_scale_on_eight_gpus(tmp_path):
    """Every bilevel run of the paper's scale (the method, separate mode, the authors' code, a sweep
    point) from the 0.8 expert, with the paper's lambda = 100, K = 20, 20,000 iterations and the
    bilevel resources; the variants reach the command. (Upstream directories are empty stand-ins.)"""
    import re

    from tests.repo_copy import copy_repo, run

    copy_repo(tmp_path)
    for stand_in in ("expert-80", "base", "data"):
        (tmp_path / "results/sd21" / stand_in).mkdir(parents=True)
    targets = [f"results/sd21/{run_name}" for run_name in
               ("bilevel-artists-s0", "bilevelsep-artists-s0", "bilevelcode-global-s0", "bilevel-lam0-K20-s0")]
    result = run(["snakemake", "-n", "-p", "--profile", "slurm", "--configfile", "config/sd21.yaml", "--", *targets],
                 tmp_path, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = re.split(r"\n(?:local)?rule ", out)[1:]
    assert len([j for j in jobs if j.startswith(("bilevel:", "bilevel_sweep_run:"))]) == 4, out
    for job in jobs:
        assert "input: results/sd21/expert-80, results/sd21/base, results/sd21/data" in job
        assert "gpu=8" in job and "mem_mb=256000" in job and "runtime=4320" in job
        assert "accelerate launch --multi_gpu --num_processes 8 -m pruneforget bilevel" in job
        assert '"lam": 100.0' in job and '"k": 20' in job and '"steps": 20000' in job
        assert '"sweep"' not in job  # the sweep's grid is not a setting of a run
    variants = re.findall(r"--variant (\w+) --seed", out)
    assert sorted(variants) == ["code", "paper", "separate"], variants
    assert "--setting artists --lam 0 --k 20" in out
