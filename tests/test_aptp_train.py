"""The APTP pruning run: its resource loss moves the experts' MACs to the budget, it refuses bad
input before any work, its outputs make experts and a routed pipeline, and it resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pruneforget.cli import main
from pruneforget.models.structure import prunable_groups
from pruneforget.prune.aptp_train import train_aptp
from pruneforget.prune.macs import mac_table
from pruneforget.prune.router import GateLayout, PromptEncoder, Router, RouterConfig

APTP = {
    "experts": 2, "steps": 60, "pretrain_steps": 4, "batch_size": 4, "lr": 5.0e-2, "scale_lr": True,
    "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0, "resolution": 16, "prompt_encoder": "minilm",
    "gate_offset": 3.0, "gumbel_temperature": 0.4, "gumbel": "logistic", "depth_order": None,
    "sinkhorn_epsilon": 0.05, "sinkhorn_iterations": 3,
    "contrastive_temperature": 0.03, "contrastive": "bce", "snr_gamma": 5.0, "snr_form": "diffusers", "anneal_noise": True,
    "weights": {"resource": 2.0, "contrastive": 100.0, "output_kd": 0.2, "block_kd": 0.2},
    "route_prompts": 32, "caption_cache": 100, "log_every": 10, "checkpoint_every": 30, "seed": 0,
}
PRUNE = {"width_groups": 32, "latent_size": 8, "text_len": 16, "budget_tolerance": 0.03, "static_seed": 0, "aptp": APTP}
CAPTIONS = ["a red circle, striped style", "a blue square with dots", "a red square in the style of waves",
            "a blue circle, plain style"]


@pytest.fixture()
def data_dir(tmp_path):
    """A world of 16 random 16x16 images with four captions (train.csv as prepare-data writes it)."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        rows.append({"image": f"images/{i}.png", "caption": CAPTIONS[i % 4], "image_id": i})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    return root


@pytest.fixture()
def base_dir(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def _setup(pipe, cfg=APTP):
    groups = prunable_groups(pipe.unet, 32)
    macs = mac_table(pipe.unet, groups, latent_size=8, text_len=16)
    encoder = PromptEncoder("minilm")
    router = Router(RouterConfig(GateLayout.from_groups(groups), encoder.dim, cfg["experts"], "minilm"), seed=0)
    return groups, macs, encoder, router


def test_resource_loss_moves_the_experts_mac_ratio_to_the_budget(tiny_pipe, data_dir, tmp_path):
    groups, macs, encoder, router = _setup(tiny_pipe)
    table = pd.read_csv(data_dir / "train.csv")
    before = [float(macs.ratio(router.code_masks(i))) for i in range(2)]
    assert before == [1.0, 1.0]  # codes start with every gate open
    train_aptp(tiny_pipe, router, encoder, groups, macs, table, data_dir, APTP, budget=0.6, work_dir=tmp_path)
    after = [float(macs.ratio(router.code_masks(i))) for i in range(2)]
    assert abs(np.mean(after) - 0.6) < abs(np.mean(before) - 0.6) / 2, after
    log = pd.read_csv(tmp_path / "metrics.csv")
    assert list(log["step"]) == [10, 20, 30, 40, 50, 60] and log["noise"].iloc[-1] == 0.0
    assert list(log["pretrain"]) == [0.0] * 6 and (log["mac_ratio"] < 1).all()
    assert json.loads((tmp_path / "cost.json").read_text())["objectives"]["aptp"]["steps"] == 60
    # the teacher stayed frozen: only the router learned
    assert not any(p.requires_grad for p in tiny_pipe.unet.parameters())


@pytest.mark.parametrize(
    "change, message",
    [
        (["--budget", "0"], "not a share of the full MACs"),
        (["--budget", "1.5"], "not a share of the full MACs"),
        (["--base", "/nonexistent/base"], "teacher /nonexistent/base is missing"),
        ({"experts": 0}, "at least one architecture code"),
        ({"experts": 8, "batch_size": 4}, "raise batch_size"),
    ],
)
def test_prune_aptp_refuses_bad_input_before_any_work(base_dir, data_dir, tmp_path, change, message, monkeypatch):
    import pruneforget.models.load as load

    monkeypatch.setattr(load, "load_pipeline", lambda *a, **k: pytest.fail("loaded a model before checking its input"))
    args = {"--base": str(base_dir), "--data": str(data_dir), "--budget": "0.8", "--out": str(tmp_path / "out")}
    prune = json.loads(json.dumps(PRUNE))
    if isinstance(change, dict):
        prune["aptp"].update(change)
    else:
        args[change[0]] = change[1]
    argv = ["prune-aptp", *[x for kv in args.items() for x in kv], "--params", json.dumps(prune)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert message in str(exc.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.work").exists()


def test_prune_aptp_then_extract_expert_and_route(base_dir, data_dir, tmp_path, capsys):
    from pruneforget.models.load import load_pipeline
    from pruneforget.prune.routed import load_routed_pipeline

    out = tmp_path / "aptp"
    main(["prune-aptp", "--base", str(base_dir), "--data", str(data_dir), "--budget", "0.6",
          "--params", json.dumps(PRUNE), "--out", str(out)])
    for name in ["router.safetensors", "router_config.json", "codes/code-0.json", "codes/code-1.json",
                 "metrics.csv", "cost.json", "run_config.json"]:
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()
    info = json.loads((out / "experts.json").read_text())
    experts = info["experts"]
    assert [e["index"] for e in experts] == [0, 1] and sum(e["train_prompts"] for e in experts) == 16  # every caption of train.csv
    assert all(0 < e["mac_ratio"] <= 1 and e["params"] > 0 for e in experts)

    chosen = min(experts, key=lambda e: abs(e["mac_ratio"] - 0.6))
    expert_dir = tmp_path / "expert"
    main(["extract-expert", "--aptp", str(out), "--base", str(base_dir), "--target", "0.6",
          "--tolerance", str(abs(chosen["mac_ratio"] - 0.6) + 1e-3), "--out", str(expert_dir)])
    record = json.loads((expert_dir / "expert.json").read_text())
    assert record["code_index"] == chosen["index"] and record["mac_ratio"] == chosen["mac_ratio"]
    expert = load_pipeline(expert_dir)
    assert sum(p.numel() for p in expert.unet.parameters()) == chosen["params"] == record["params"]

    # no code near an unreachable target: a clear refusal naming the ratios found, nothing written
    with pytest.raises(SystemExit) as exc:
        main(["extract-expert", "--aptp", str(out), "--base", str(base_dir), "--target", "0.05",
              "--tolerance", "0.01", "--out", str(tmp_path / "none")])
    assert "code 0:" in str(exc.value) and "retrain APTP with budget 0.05" in str(exc.value)
    assert not (tmp_path / "none").exists()

    # the routed pipeline samples each prompt with its router's expert
    routed = load_routed_pipeline(out, base_dir)
    routes = routed.route(CAPTIONS)
    assert routes == routed.route(CAPTIONS)
    kwargs = dict(num_inference_steps=2, guidance_scale=3.0, output_type="np")
    images = routed(CAPTIONS, generator=[torch.Generator().manual_seed(i) for i in range(4)], **kwargs).images
    for i, prompt in enumerate(CAPTIONS):
        alone = routed.expert(routes[i])([prompt], generator=[torch.Generator().manual_seed(i)], **kwargs).images[0]
        np.testing.assert_allclose(images[i], alone, atol=1e-5)
    assert routed.expert(routes[0]).unet is not routed.pipe.unet


def test_prune_aptp_resumes_where_a_crashed_run_stopped(tiny_pipe, data_dir, tmp_path, monkeypatch):
    import pruneforget.train.loop as loop

    cfg = {**APTP, "steps": 8, "pretrain_steps": 2, "checkpoint_every": 4, "log_every": 1}
    table = pd.read_csv(data_dir / "train.csv")
    groups, macs, encoder, full = _setup(tiny_pipe, cfg)
    train_aptp(tiny_pipe, full, encoder, groups, macs, table, data_dir, cfg, 0.6, tmp_path / "full")

    original = loop.save_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    _, _, _, cut = _setup(tiny_pipe, cfg)
    with monkeypatch.context() as m:
        m.setattr(loop, "save_checkpoint", save_then_crash)
        with pytest.raises(KeyboardInterrupt):
            train_aptp(tiny_pipe, cut, encoder, groups, macs, table, data_dir, cfg, 0.6, tmp_path / "cut")
    _, _, _, resumed = _setup(tiny_pipe, cfg)  # a fresh process: the router comes from the checkpoint
    train_aptp(tiny_pipe, resumed, encoder, groups, macs, table, data_dir, cfg, 0.6, tmp_path / "cut")
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    logs = [pd.read_csv(tmp_path / run / "metrics.csv").drop(columns="seconds") for run in ("full", "cut")]
    pd.testing.assert_frame_equal(*logs)
    assert list(logs[0]["pretrain"]) == [1.0, 1.0] + [0.0] * 6  # the schedule followed the global step
