"""Fine-tuning: the Eq. 8 terms, random re-initialisation, batch sources, the denoising error,
and the `finetune` command end to end on a tiny random pipeline (plus its input checks)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from pruneforget.cli import main
from pruneforget.metrics.denoising import denoising_error
from pruneforget.metrics.evaluator import Evaluator, EvaluatorNet, save_evaluator
from pruneforget.models.load import load_pipeline
from pruneforget.models.tiny import build_pipeline, build_vae
from pruneforget.train.batches import denoising_batch
from pruneforget.train.data import StreamedPairs, precomputed_pairs
from pruneforget.train.finetune import distillation_terms, reinitialise
from pruneforget.train.losses import diffusion_loss

WEIGHTS = {"diff": 1.0, "out_kd": 2.0, "feat_kd": 0.1}

FT = {
    "steps": 2, "batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "lr_schedule": "constant_with_warmup",
    "warmup_steps": 0, "betas": [0.9, 0.999], "weight_decay": 0.0, "max_grad_norm": None, "snr_gamma": 5.0, "snr_form": "diffusers",
    "loss_weights": WEIGHTS, "caption_dropout": 0.25, "mixed_precision": "no", "gradient_checkpointing": False,
    "precompute": True, "resolution": None, "limit": None, "checkpoint_every": 1, "log_every": 1, "eval_every": 1,
    "fid_reference": None,
    "eval": {"prompts": 4, "sample_steps": 2, "guidance": 3.0, "denoising_images": 3, "timesteps_per_image": 2,
             "batch_size": 4, "seed": 0},
}


def noise_scheduler(pipe):
    return DDPMScheduler.from_config(pipe.scheduler.config)


def a_batch(pipe, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, noise = torch.randn(n, 4, 8, 8, generator=g), torch.randn(n, 4, 8, 8, generator=g)
    t = torch.tensor([50, 700][:n])
    text = pipe.encode_prompt(["a red circle"] * n, "cpu", 1, False)[0]
    return denoising_batch(noise_scheduler(pipe), x0, noise, t, text)


def test_distillation_from_an_identical_teacher_leaves_only_the_diffusion_term(tiny_pipe):
    sched, batch = noise_scheduler(tiny_pipe), a_batch(tiny_pipe)
    teacher = copy.deepcopy(tiny_pipe.unet)
    terms = distillation_terms(tiny_pipe.unet, teacher, batch, sched, 5.0, WEIGHTS)
    assert terms["out_kd"].item() == 0 and terms["feat_kd"].item() == 0
    pred = tiny_pipe.unet(batch["noisy"], batch["timesteps"], batch["text"]).sample
    expected = diffusion_loss(pred, batch["target"], batch["timesteps"], sched, 5.0)
    torch.testing.assert_close(terms["total"], expected)
    assert set(distillation_terms(tiny_pipe.unet, None, batch, sched, 5.0, WEIGHTS)) == {"diff", "total"}


def test_distillation_terms_match_hand_weighting(tiny_pipe):
    sched, batch = noise_scheduler(tiny_pipe), a_batch(tiny_pipe)
    teacher = reinitialise(copy.deepcopy(tiny_pipe.unet), seed=3)
    terms = distillation_terms(tiny_pipe.unet, teacher, batch, sched, None, WEIGHTS)
    assert terms["out_kd"] > 0 and terms["feat_kd"] > 0
    by_hand = terms["diff"] + 2.0 * terms["out_kd"] + 0.1 * terms["feat_kd"]
    torch.testing.assert_close(terms["total"], by_hand)
    terms["total"].backward()
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen
    assert tiny_pipe.unet.conv_in.weight.grad.abs().sum() > 0


def test_random_init_keeps_architecture_and_is_seeded(tiny_pipe):
    before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    a = reinitialise(copy.deepcopy(tiny_pipe.unet), seed=1).state_dict()
    b = reinitialise(copy.deepcopy(tiny_pipe.unet), seed=1).state_dict()
    c = reinitialise(copy.deepcopy(tiny_pipe.unet), seed=2).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in before.items()}
    assert all(torch.equal(a[k], b[k]) for k in a)
    changed = [k for k in a if a[k].numel() > 1 and not torch.equal(a[k], c[k])]
    weights = [k for k in a if k.endswith("weight") and a[k].ndim > 1]
    assert set(weights) <= set(changed)  # every weight matrix / kernel drawn afresh
    assert not torch.equal(a["conv_in.weight"], before["conv_in.weight"])


def test_streamed_batches_equal_precomputed_batches(tiny_pipe, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    captions = ["a red circle", "a blue square", "", "a red star", "a blue circle"]
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    table = pd.DataFrame({"image": [f"{i}.png" for i in range(5)], "caption": captions})
    sched = noise_scheduler(tiny_pipe)
    pre = precomputed_pairs(tiny_pipe, images, captions, sched, seed=4, caption_dropout=0.3)
    streamed = StreamedPairs(tiny_pipe, tmp_path, table, 16, sched, seed=4, caption_dropout=0.3)
    positions = range(3, 11)  # crosses an epoch boundary
    a, b = pre(positions), streamed(positions)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # positions, not calls, decide a sample: the same position gives the same sample again
    torch.testing.assert_close(pre(range(5, 7))["noisy"], a["noisy"][2:4])


def test_denoising_error_is_deterministic_and_matches_its_definition(tiny_pipe):
    sched = noise_scheduler(tiny_pipe)
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    text = tiny_pipe.encode_prompt(["a", "b", "c"], "cpu", 1, False)[0]
    unet = tiny_pipe.unet
    err = denoising_error(unet, sched, latents, text, 2, seed=7)
    assert err == denoising_error(unet, sched, latents, text, 2, seed=7)
    assert err == pytest.approx(denoising_error(unet, sched, latents, text, 2, seed=7, batch_size=1), rel=1e-6)
    assert err != denoising_error(unet, sched, latents, text, 2, seed=8)
    g = torch.Generator().manual_seed(7)
    t = torch.randint(1000, (6,), generator=g)
    noise = torch.randn(6, 4, 8, 8, generator=g)
    x0, c = latents.repeat_interleave(2, 0), text.repeat_interleave(2, 0)
    with torch.no_grad():
        pred = unet(sched.add_noise(x0, noise, t), t, c).sample
    target = sched.get_velocity(x0, noise, t)
    assert err == pytest.approx(float((pred - target).pow(2).mean()), rel=1e-5)


# ---- the command ----------------------------------------------------------------------------

TINY_BASE_OTHER = {
    "text_encoder": "minilm", "max_length": 16, "prediction_type": "v_prediction",
    "vae": {"block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 4},
    "unet": {"block_out_channels": [16, 16], "layers_per_block": 1, "attention_heads": [2, 2], "norm_num_groups": 4},
}


def write_data(root, n_ft=6, n_val=4, empty_captions=False):
    rng = np.random.default_rng(0)
    for split, n in (("finetune", n_ft), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        rows = []
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "images" / split / f"{i}.png")
            caption = "" if empty_captions and split == "finetune" else f"a {['red', 'blue'][i % 2]} circle"
            rows.append({"image": f"images/{split}/{i}.png", "caption": caption, "image_id": i})
        pd.DataFrame(rows).to_csv(root / f"{split}.csv", index=False)
    (root / "world.json").write_text(json.dumps({"kind": "tiny"}))
    return root


def write_evaluator(path):
    torch.manual_seed(0)
    labels = {"style": ["plain", "dots"], "shape": ["circle"], "colour": ["red", "blue"]}
    net = EvaluatorNet({k: len(v) for k, v in labels.items()}, width=4, feature_dim=6)
    save_evaluator(Evaluator(net, labels, image_size=16), path)
    return path


@pytest.fixture()
def workspace(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "base")
    tiny_pipe.save_pretrained(tmp_path / "expert")
    write_data(tmp_path / "data")
    write_evaluator(tmp_path / "evaluator")
    return tmp_path


def command(ws, out="ft", params=FT, **flags):
    args = {"--expert": ws / "expert", "--teacher": ws / "base", "--data": ws / "data", "--evaluator": ws / "evaluator",
            "--loss": "kd", "--init": "pruned", "--seed": 0, "--out": ws / out, **flags}
    argv = ["finetune", "--params", json.dumps(params)]
    for k, v in args.items():
        if v is not None:
            argv += [k, str(v)]
    return argv


def test_finetune_command_writes_a_run_directory(workspace):
    main(command(workspace))
    out = workspace / "ft"
    for name in ("model_index.json", "metrics.csv", "eval.csv", "cost.json", "run_config.json"):
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists() and not (workspace / ".ft.work").exists()
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["step"].tolist() == [1, 2] and {"diff", "out_kd", "feat_kd", "total"} <= set(metrics.columns)
    evals = pd.read_csv(out / "eval.csv")
    assert evals.columns.tolist() == ["step", "denoising_error", "frechet"] and evals["step"].tolist() == [0, 1, 2]
    assert np.isfinite(evals[["denoising_error", "frechet"]].to_numpy()).all()
    cost = json.loads((out / "cost.json").read_text())
    assert cost["effective_batch_size"] == 4 and cost["gradient_accumulation_steps"] == 2
    assert cost["objectives"]["ft"]["steps"] == 2
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["loss"] == "kd" and run_config["pairs"] == 6
    tuned, start = load_pipeline(out).unet.state_dict(), load_pipeline(workspace / "expert").unet.state_dict()
    assert any(not torch.equal(tuned[k], start[k]) for k in start)


def test_expert_of_another_base_is_refused_before_work(workspace, tiny_pipe):
    torch.manual_seed(0)
    other = build_pipeline(TINY_BASE_OTHER, image_size=16, vae=build_vae(TINY_BASE_OTHER["vae"], 16))
    other.save_pretrained(workspace / "other")
    with pytest.raises(ValueError, match="block_out_channels: expert \\[16, 16\\] vs teacher \\[16, 32\\]"):
        main(command(workspace, **{"--expert": workspace / "other"}))
    assert not (workspace / "ft").exists() and not (workspace / ".ft.work").exists()


def test_missing_directories_and_evaluator_are_named(workspace):
    with pytest.raises(FileNotFoundError, match="--teacher"):
        main(command(workspace, **{"--teacher": workspace / "nope"}))
    with pytest.raises(ValueError, match="--evaluator"):
        main(command(workspace, **{"--evaluator": None}))
    assert not (workspace / ".ft.work").exists()


def test_dataset_without_usable_rows_is_refused(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "base")
    write_data(tmp_path / "data", empty_captions=True)
    write_evaluator(tmp_path / "evaluator")
    with pytest.raises(ValueError, match="finetune.csv has no rows"):
        main(command(tmp_path, **{"--expert": tmp_path / "base"}))
    assert not (tmp_path / ".ft.work").exists()
