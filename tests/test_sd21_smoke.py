"""The sd21 smoke: its config is sd21.yaml with only sizes and sources changed, and its stand-ins
load through the paper-scale loaders in their sources' formats."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Every key config/sd21_smoke.yaml may set differently from config/sd21.yaml, and why.
SIZE, SOURCE = "size", "source"
ALLOWED = {
    "scale": "results/sd21_smoke/, never mixed with a cluster run's results/sd21/",
    "world.root": SOURCE, "base.pretrained": SOURCE, "prune.aptp.prompt_encoder": SOURCE,
    "score.clip_model": SOURCE, "score.csd_checkpoint": SOURCE, "score.csd_backbone": SOURCE,
    "score.fid_features": SOURCE + ": clean-fid's Inception cannot be downloaded here",
    "prompt_sets.lock": SOURCE + ": the stand-in files' checksums, recorded beside them",
    "prompt_sets.urls*": SOURCE,
    "world.val_captions": SIZE, "sample.steps": SIZE, "sample.batch_size": SIZE, "sample.quality_prompts": SIZE,
    "sample.eval_prompts": SIZE,
    "resources.finetune.gpu": SIZE + ": 2 processes instead of 8", "resources.bilevel.gpu": SIZE,
    "figures.*.tile": SIZE,
    # The open questions' figures: each new pruner, upper method and continual path once, not the
    # cluster's every combination (each row is a training run plus its samples and scores).
    "figures.table_pruners.rows": SIZE, "figures.table_upper.rows": SIZE, "figures.fig_continual.rows": SIZE,
    "frontier.curves": SIZE + ": one two-value curve of the cheapest method (UCE), not every method's sweep",
    "prune.latent_size": SIZE + ": MACs at the smoke's 64 px",
    "prune.importance.batches": SIZE, "prune.importance.batch_size": SIZE,
    "prune.aptp.experts": SIZE, "prune.aptp.steps": SIZE, "prune.aptp.pretrain_steps": SIZE,
    "prune.aptp.batch_size": SIZE, "prune.aptp.warmup_steps": SIZE, "prune.aptp.resolution": SIZE,
    "prune.aptp.route_prompts": SIZE, "prune.aptp.log_every": SIZE, "prune.aptp.checkpoint_every": SIZE,
    "prune.aptp.lr": "so that 150 steps move the codes to both MAC budgets (extract_expert needs them within 0.03)",
    "finetune.steps": SIZE, "finetune.batch_size": SIZE, "finetune.micro_batch_size": SIZE,
    "finetune.warmup_steps": SIZE, "finetune.resolution": SIZE, "finetune.checkpoint_every": SIZE,
    "finetune.log_every": SIZE, "finetune.eval_every": SIZE, "finetune.eval.*": SIZE,
    "score.batch_size": SIZE, "score.num_workers": SIZE, "score.fid_reference_size": SIZE,
    "unlearn.conceptprune.steps": SIZE, "unlearn.conceptprune.batch_size": SIZE,
    "unlearn.esd.steps": SIZE, "unlearn.esd.sample_steps": SIZE, "unlearn.esd.log_every": SIZE,
    "bilevel.steps": SIZE, "bilevel.warmup_steps": SIZE, "bilevel.eval_every": SIZE,
    "bilevel.checkpoint_every": SIZE, "bilevel.log_every": SIZE,
    "bilevel.k": SIZE + ": lower steps per upper step, scaled with the 4 steps so the upper level runs",
    "bilevel.code.k": SIZE, "bilevel.sweep.*": SIZE + ": fewer sweep settings",
}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def smoke_differences(paper: dict, smoke: dict) -> list[str]:
    """Keys set in one config and not the other, or to another value, that ALLOWED does not list."""
    a, b = _flat(paper), _flat(smoke)
    changed = {k for k in a.keys() | b.keys() if a.get(k, object()) != b.get(k, object())}
    return sorted(k for k in changed if not any(fnmatch.fnmatchcase(k, pattern) for pattern in ALLOWED))


def test_smoke_config_differs_from_sd21_only_in_sizes_and_sources():
    assert smoke_differences(_load("sd21.yaml"), _load("sd21_smoke.yaml")) == []


def test_the_difference_check_catches_a_changed_method_setting():
    smoke = _load("sd21_smoke.yaml")
    smoke["bilevel"]["lam"] = 1.0
    smoke["unlearn"]["esd"]["lr"] = 1.0
    smoke["finetune"]["loss_weights"]["out_kd"] = 0.0
    assert smoke_differences(_load("sd21.yaml"), smoke) == ["bilevel.lam", "finetune.loss_weights.out_kd", "unlearn.esd.lr"]


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Path:
    """`make-standins` run as a user runs it, into a fresh directory."""
    root = tmp_path_factory.mktemp("standins_root")
    out = root / "data" / "standins"
    result = subprocess.run([sys.executable, "-m", "pruneforget", "make-standins", "--out", str(out),
                             "--prompts", str(ROOT / "config" / "prompts")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_smoke_config_validates_once_the_standins_exist(standins, monkeypatch):
    from pruneforget.config import ConfigError, validate_config

    monkeypatch.chdir(standins.parents[1])
    validate_config(_load("sd21_smoke.yaml"))
    monkeypatch.chdir(standins.parents[2])
    with pytest.raises(ConfigError, match="make-standins"):
        validate_config(_load("sd21_smoke.yaml"))


def test_sd21_standin_has_sd21s_classes_and_keys(standins):
    from pruneforget.models.load import load_pipeline

    index = json.loads((standins / "sd21" / "model_index.json").read_text())
    assert {k: v for k, v in index.items() if not k.startswith("_")} == {
        "feature_extractor": ["transformers", "CLIPImageProcessor"], "image_encoder": [None, None],
        "requires_safety_checker": False, "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    pipe = load_pipeline(standins / "sd21")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.unet.config.use_linear_projection and pipe.unet.config.upcast_attention
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.text_encoder.config.hidden_act == "gelu"  # OpenCLIP-H, not OpenAI CLIP's quick_gelu
    ids = pipe.tokenizer(["The Starry Night by Vincent van Gogh"], padding="max_length", truncation=True,
                         max_length=pipe.tokenizer.model_max_length).input_ids[0]
    assert len(ids) == 77 and pipe.tokenizer.pad_token == "!"
    assert ids[:9] == [pipe.tokenizer.bos_token_id] + ids[1:8] + [pipe.tokenizer.eos_token_id]
    assert pipe.tokenizer.convert_ids_to_tokens(ids[1:8])[-1] == "gogh</w>"  # a learned merge, not bytes


def test_sd21_standin_is_deterministic_for_its_seed(standins, tmp_path):
    from pruneforget.standins.sd21 import build_sd21_pipeline

    corpus = ["a red circle on a blue background"] * 3
    a = build_sd21_pipeline(tmp_path / "a", corpus, seed=1, merges=20)
    b = build_sd21_pipeline(tmp_path / "b", corpus, seed=1, merges=20)
    assert (tmp_path / "a" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == \
        (tmp_path / "b" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (tmp_path / "a" / "tokenizer" / "merges.txt").read_text() == (tmp_path / "b" / "tokenizer" / "merges.txt").read_text()
    assert sum(p.numel() for p in a.unet.parameters()) == sum(p.numel() for p in b.unet.parameters())


def test_coco_standin_is_read_by_the_real_coco_preparation(standins, tmp_path):
    from pruneforget.world.coco import build_coco

    def no_network(*args, **kwargs):
        raise AssertionError("the stand-in copy is complete: nothing may be downloaded")

    out = tmp_path / "data"
    build_coco({"kind": "coco", "root": str(standins / "coco2017"), "download": True, "verify_checksums": True,
                "val_captions": 16, "seed": 0}, out, fetch=no_network)
    train, val = pd.read_csv(out / "train.csv"), pd.read_csv(out / "val.csv")
    assert len(train) == 48 * 5 and len(val) == 16 and val["image_id"].is_unique
    assert all(Path(p).is_file() for p in val["image"])


def test_encoder_standins_load_through_the_metric_and_router_loaders(standins):
    import numpy as np

    from pruneforget.metrics.clip_score import clip_scores, load_clip
    from pruneforget.metrics.csd import csd_similarity, load_csd
    from pruneforget.prune.router import PromptEncoder

    model, tokenizer = load_clip(str(standins / "clip"))
    images = np.random.default_rng(0).integers(0, 255, (2, 48, 64, 3), dtype=np.uint8)
    assert clip_scores(model, tokenizer, images, ["a cat", "a dog"]).shape == (2,)
    csd = load_csd(standins / "csd" / "checkpoint.pth", str(standins / "csd"))
    np.testing.assert_allclose(csd_similarity(csd, images, images), 1.0, atol=1e-5)
    modules = json.loads((standins / "mpnet" / "modules.json").read_text())
    # (the module paths differ between sentence-transformers versions; the class names do not)
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    encoder = PromptEncoder(str(standins / "mpnet"))
    assert encoder.model.config.model_type == "mpnet"
    emb = encoder(["a cat on a mat", "a dog"])
    np.testing.assert_allclose(emb.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def test_prompt_files_go_through_the_real_fetch_and_lock(standins, tmp_path):
    from pruneforget.standins.prompt_files import FILES
    from pruneforget.world.nsfw_prompts import PromptSetError, fetch_prompt_set, read_lock, record_lock, source_for

    lock_path = tmp_path / "lock.json"
    for name, file in FILES.items():
        source = source_for(name, {name: str(standins / "prompts" / file)})
        table, entry = fetch_prompt_set(source, read_lock(lock_path), seed=0)
        record_lock(lock_path, name, entry)
        assert len(table) == entry["rows"] and table["prompt"].str.len().min() > 0
    assert read_lock(lock_path)["i2p"]["rows"] == 4703 and read_lock(lock_path)["mma"]["rows"] == 1000
    # A changed file no longer matches the lock its first download recorded.
    changed = tmp_path / "ringabell.csv"
    changed.write_text((standins / "prompts" / FILES["ringabell"]).read_text() + "one more prompt\n")
    lock = read_lock(lock_path)
    lock["ringabell"]["url"] = str(changed)
    with pytest.raises(PromptSetError, match="sha256"):
        fetch_prompt_set(source_for("ringabell", {"ringabell": str(changed)}), lock, seed=0)


def test_fid_with_clip_features_runs_the_reference_and_sample_sides_alike(standins, tmp_path):
    """score.fid_features: clip (the smoke's FID extractor): the reference records its extractor,
    and samples are embedded with it, so a set scored against its own statistics has FID ~ 0."""
    import argparse

    from PIL import Image

    from pruneforget.commands import fid_reference
    from pruneforget.metrics.fid_reference import fid_against_reference, read_reference_stats
    from pruneforget.world.coco import build_coco

    data = tmp_path / "data"
    build_coco({"kind": "coco", "root": str(standins / "coco2017"), "download": False, "val_captions": 16, "seed": 0}, data)
    params = {"fid_features": "clip", "clip_model": str(standins / "clip"), "fid_reference_size": 64, "batch_size": 5}
    fid_reference.run(argparse.Namespace(data=data, params=params, out=tmp_path / "ref"))
    _, _, info = read_reference_stats(tmp_path / "ref")
    assert info["features"] == "clip" and info["clip_model"] == str(standins / "clip") and info["images"] == 16
    # The same images as the reference saw them (center crop, 64 px) against it: FID ~ 0.
    from pruneforget.metrics.fid_reference import center_crop_resize

    same = []
    for i, path in enumerate(pd.read_csv(data / "val.csv")["image"]):
        same.append(tmp_path / f"same{i}.png")
        Image.fromarray(center_crop_resize(np.asarray(Image.open(path).convert("RGB")), 64)).save(same[-1])
    assert abs(fid_against_reference(same, tmp_path / "ref")) < 1e-3
    other = []
    for i in range(16):
        other.append(tmp_path / f"other{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(other[-1])
    assert fid_against_reference(other, tmp_path / "ref") > 1e-2


def test_two_process_finetuning_equals_one_process_with_the_same_effective_batch(standins, tmp_path):
    """The smoke's fine-tuning job of a pruned expert as on the cluster (`accelerate launch --multi_gpu`, here 2 CPU
    processes over gloo, micro-batch 1 x 2 accumulation steps each) against one process with 4
    accumulation steps: the same 4 samples per step, so the same weights.

    Tolerance: the two sum the same four float32 gradients in another order (all-reduce of two
    partial sums against one running sum), a relative difference of ~1e-7 in each gradient. Adam
    divides by the gradient's own scale, so an update differs by about that share of the learning
    rate, and two steps cannot move a weight apart by more than 1e-3 x lr; a process that trained
    alone on its own half of the batch would be ~lr apart (the samples differ)."""
    import os

    from safetensors.torch import load_file

    from pruneforget.world.coco import build_coco

    data = tmp_path / "data"
    build_coco({"kind": "coco", "root": str(standins / "coco2017"), "download": False, "val_captions": 16, "seed": 0}, data)
    # The student: an expert of the stand-in with one self-attention pruned to no heads, whose
    # norm1 then gets no gradient (DDP must be told, or it stops at the first step), and some
    # feed-forward units pruned, so that both distillation terms are non-zero.
    import torch

    from pruneforget.models.expert import extract_expert, write_pipeline
    from pruneforget.models.load import load_pipeline
    from pruneforget.models.structure import prunable_groups

    pipe = load_pipeline(standins / "sd21")
    groups = prunable_groups(pipe.unet, 32)
    code = {g.name: torch.ones(g.units) for g in groups}
    code[next(g.name for g in groups if g.name.endswith("attn1:heads"))].zero_()
    for g in [g for g in groups if g.name.endswith("ff:width")][:2]:
        code[g.name][: g.units // 2] = 0
    pipe.unet = extract_expert(pipe.unet, code, 32)
    student = write_pipeline(pipe, tmp_path / "student")
    params = dict(_load("sd21_smoke.yaml")["finetune"], steps=2, batch_size=4, micro_batch_size=1)
    common = ["finetune", "--expert", str(student), "--teacher", str(standins / "sd21"), "--data", str(data),
              "--no-eval", "--loss", "kd", "--init", "pruned", "--seed", "0", "--params", json.dumps(params)]
    env = {**{k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}, "OMP_NUM_THREADS": "1"}
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", "0",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "pruneforget"]
    for cmd, out in (([sys.executable, "-m", "pruneforget"], "one"), (launch, "two")):
        result = subprocess.run(cmd + common + ["--out", str(tmp_path / out)], env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = (load_file(tmp_path / d / "unet" / "diffusion_pytorch_model.safetensors") for d in ("one", "two"))
    start = load_file(student / "unet" / "diffusion_pytorch_model.safetensors")
    lr = params["lr"]
    moved = max((one[k].float() - start[k].float()).abs().max().item() for k in one)
    assert moved > 0.5 * lr  # the run trained
    gap = max((one[k].float() - two[k].float()).abs().max().item() for k in one)
    assert gap <= 1e-3 * lr, f"2 processes ended {gap:.3g} from 1 process (lr {lr})"
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    assert (a[["diff", "out_kd", "feat_kd"]] > 0).all().all()
    # the logged losses are means over all four samples, whichever process drew them
    np.testing.assert_allclose(a[["diff", "out_kd", "feat_kd", "total"]], b[["diff", "out_kd", "feat_kd", "total"]], rtol=1e-4)
    assert json.loads((tmp_path / "two" / "cost.json").read_text())["num_processes"] == 2
