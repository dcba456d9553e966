"""`python -m pruneforget score` on small sample sets built in tmp_path: it writes the score
document for every metric it can run here (tiny judges with a random evaluator; CLIP, CP, CSD and
NudeNet with small random or packaged weights), agrees with the library it wraps, and refuses bad
inputs, naming the file at fault and writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pruneforget.cli import main
from pruneforget.metrics.evaluator import Evaluator, EvaluatorNet, load_evaluator, save_evaluator

LABELS = {"style": ["plain", "stripes", "dots"], "shape": ["circle", "square"], "colour": ["red", "blue"]}
TINY = {"metrics": ["judge", "ua", "retain", "cp_evaluator", "frechet_evaluator"], "reference_model": "ref",
        "batch_size": 4}
KEYS = {"metric", "version", "inputs", "value", "n", "per_item"}


def _write_images(root: Path, n: int, seed: int, size: int = 16) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = [f"{i:05d}.png" for i in range(n)]
    for f in files:
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f)
    return files


def make_samples(root: Path, seed: int, n_prompts: int = 3, k: int = 2) -> Path:
    """A sample set as `sample` writes it: n_prompts x k seeds, manifest with labels."""
    files = _write_images(root, n_prompts * k, seed)
    styles = ["stripes", "dots", "plain"]
    rows = []
    for n, f in enumerate(files):
        p, i = divmod(n, k)
        rows.append({"file": f, "prompt": f"a red circle, {styles[p % 3]} style", "seed": 100 * p + i,
                     "guidance": 5.0, "steps": 2, "scheduler": "ddim", "model": "m", "prompt_index": p,
                     "seed_index": i, "style": styles[p % 3], "shape": ["circle", "square"][p % 2],
                     "colour": ["red", "blue"][n % 2], "style_word": styles[p % 3]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def evaluator_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = EvaluatorNet({k: len(v) for k, v in LABELS.items()}, width=4, feature_dim=8)
    out = tmp_path_factory.mktemp("evaluator")
    save_evaluator(Evaluator(net, LABELS, image_size=16), out)
    return out


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    root = tmp_path / "data"
    files = _write_images(root / "images" / "val", 5, seed=9)
    pd.DataFrame({"image": [f"images/val/{f}" for f in files], "caption": "a red circle", "image_id": range(5),
                  "style": "plain", "shape": "circle", "colour": "red", "style_word": "plain"}).to_csv(root / "val.csv", index=False)
    return root


def score(tmp_path: Path, metric: str, params: dict, **inputs) -> dict:
    out = tmp_path / "scores" / f"{metric}.json"
    argv = ["score", "--metric", metric, "--params", json.dumps(params), "--out", str(out)]
    for name, path in inputs.items():
        argv += [f"--{name}", str(path)]
    main(argv)
    return json.loads(out.read_text())


def refused(tmp_path: Path, metric: str, params: dict, **inputs) -> str:
    with pytest.raises(SystemExit) as info:
        score(tmp_path, metric, params, **inputs)
    assert not (tmp_path / "scores").exists()  # nothing written
    return str(info.value)


@pytest.mark.parametrize("metric", ["judge", "ua", "retain", "cp_evaluator", "frechet_evaluator"])
def test_tiny_metrics_write_the_score_document(tmp_path, evaluator_dir, data_dir, metric):
    samples = make_samples(tmp_path / "s", seed=1)
    inputs = {"samples": samples, "evaluator": evaluator_dir}
    if metric == "cp_evaluator":
        inputs["reference"] = make_samples(tmp_path / "r", seed=2)
    if metric == "frechet_evaluator":
        inputs["data"] = data_dir
    doc = score(tmp_path, metric, TINY, **inputs)
    assert set(doc) == KEYS and doc["metric"] == metric and doc["n"] == 6
    assert doc["inputs"] == {k: str(v) for k, v in inputs.items()}
    values = doc["value"].values() if isinstance(doc["value"], dict) else [doc["value"]]
    assert all(isinstance(v, (int, float)) and np.isfinite(v) for v in values)


def test_ua_and_retain_agree_with_the_evaluators_own_predictions(tmp_path, evaluator_dir):
    samples = make_samples(tmp_path / "s", seed=3)
    manifest = pd.read_csv(samples / "manifest.csv")
    predicted = load_evaluator(evaluator_dir).predict([Image.open(samples / f).convert("RGB") for f in manifest["file"]])
    ua = score(tmp_path, "ua", TINY, samples=samples, evaluator=evaluator_dir)
    assert ua["value"]["ua"] == pytest.approx(np.mean(np.array(predicted["style"]) != manifest["style"].to_numpy()))
    retain = score(tmp_path, "retain", TINY, samples=samples, evaluator=evaluator_dir)["value"]
    assert retain["ira"] == pytest.approx(np.mean(np.array(predicted["style"]) == manifest["style"].to_numpy()))
    assert retain["cra"] == pytest.approx((retain["cra_shape"] + retain["cra_colour"]) / 2)
    judged = score(tmp_path, "judge", TINY, samples=samples, evaluator=evaluator_dir)["value"]
    assert judged == pytest.approx({f"{h}_acc": np.mean(np.array(predicted[h]) == manifest[h].to_numpy())
                                    for h in ("style", "shape", "colour")})


def test_cp_evaluator_of_a_set_against_itself_is_zero(tmp_path, evaluator_dir):
    samples = make_samples(tmp_path / "s", seed=4)
    assert score(tmp_path, "cp_evaluator", TINY, samples=samples, reference=samples, evaluator=evaluator_dir)["value"] == 0.0


# --- paper-scale metrics with small stand-in weights -------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["a", "red", "circle", "style", "stripes", "dots", "plain", ","]
    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 2), ("<eos>", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=3, bos_token_id=2, pad_token_id=0),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        projection_dim=8,
    )
    out = tmp_path_factory.mktemp("clip")
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def csd_files(tmp_path_factory) -> tuple[Path, Path]:
    """A CSD checkpoint in the released key layout for a 1-block CLIP vision config saved locally."""
    from transformers import CLIPVisionConfig

    width, style_dim = 16, 8
    root = tmp_path_factory.mktemp("csd")
    config = CLIPVisionConfig(hidden_size=width, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=16, patch_size=8, hidden_act="quick_gelu")
    config.save_pretrained(root / "backbone")
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    b = "module.backbone."
    state = {b + "class_embedding": r(width), b + "positional_embedding": r(5, width), b + "conv1.weight": r(width, 3, 8, 8),
             b + "ln_pre.weight": r(width), b + "ln_pre.bias": r(width), b + "ln_post.weight": r(width), b + "ln_post.bias": r(width),
             "module.last_layer_style": r(width, style_dim), "module.last_layer_content": r(width, style_dim)}
    blk = b + "transformer.resblocks.0."
    state.update({blk + "attn.in_proj_weight": r(3 * width, width), blk + "attn.in_proj_bias": r(3 * width),
                  blk + "attn.out_proj.weight": r(width, width), blk + "attn.out_proj.bias": r(width),
                  blk + "ln_1.weight": r(width), blk + "ln_1.bias": r(width), blk + "ln_2.weight": r(width), blk + "ln_2.bias": r(width),
                  blk + "mlp.c_fc.weight": r(32, width), blk + "mlp.c_fc.bias": r(32),
                  blk + "mlp.c_proj.weight": r(width, 32), blk + "mlp.c_proj.bias": r(width)})
    torch.save({"model_state_dict": state}, root / "checkpoint.pth")
    return root / "checkpoint.pth", root / "backbone"


def test_paper_metrics_write_the_score_document(tmp_path, tiny_clip_dir, csd_files):
    samples, reference = make_samples(tmp_path / "s", seed=5), make_samples(tmp_path / "r", seed=6)
    params = {"metrics": ["clip", "cp_clip", "csd", "nudenet"], "batch_size": 4, "clip_model": str(tiny_clip_dir),
              "csd_checkpoint": str(csd_files[0]), "csd_backbone": str(csd_files[1])}
    clip = score(tmp_path, "clip", params, samples=samples)
    assert set(clip) == KEYS and abs(clip["value"]) <= 100 and len(clip["per_item"]) == 6
    assert score(tmp_path, "cp_clip", params, samples=samples, reference=samples)["value"] == 0.0
    assert 0.0 <= score(tmp_path, "cp_clip", params, samples=samples, reference=reference)["value"] <= 1.0
    assert score(tmp_path, "csd", params, samples=samples, reference=samples)["value"] == pytest.approx(1.0, abs=1e-5)
    csd = score(tmp_path, "csd", params, samples=samples, reference=reference)
    assert -1.0 <= csd["value"] < 1.0 and len(csd["per_item"]) == 6
    nude = score(tmp_path, "nudenet", params, samples=samples)["value"]
    assert "any" in nude and "FEMALE_BREAST_EXPOSED" in nude and nude["any"] <= 6


# --- bad inputs ---------------------------------------------------------------------------------------


def test_missing_or_empty_sample_directory_is_named(tmp_path, evaluator_dir):
    assert "does not exist" in refused(tmp_path, "ua", TINY, samples=tmp_path / "nowhere", evaluator=evaluator_dir)
    (tmp_path / "empty").mkdir()
    assert "empty has no manifest.csv" in refused(tmp_path, "ua", TINY, samples=tmp_path / "empty", evaluator=evaluator_dir)
    pd.DataFrame({"file": []}).to_csv(tmp_path / "empty" / "manifest.csv", index=False)
    assert "empty sample set" in refused(tmp_path, "ua", TINY, samples=tmp_path / "empty", evaluator=evaluator_dir)


def test_manifest_that_does_not_match_its_images_is_refused(tmp_path, evaluator_dir):
    samples = make_samples(tmp_path / "s", seed=7)
    (samples / "00002.png").unlink()
    message = refused(tmp_path, "ua", TINY, samples=samples, evaluator=evaluator_dir)
    assert "missing" in message and str(samples / "00002.png") in message
    samples = make_samples(tmp_path / "t", seed=7)
    Image.new("RGB", (16, 16)).save(samples / "00099.png")
    message = refused(tmp_path, "ua", TINY, samples=samples, evaluator=evaluator_dir)
    assert "does not list" in message and str(samples / "00099.png") in message and "6 manifest rows, 7 PNGs" in message
    samples = make_samples(tmp_path / "u", seed=7)
    manifest = pd.read_csv(samples / "manifest.csv")
    pd.concat([manifest, manifest.iloc[:1]]).to_csv(samples / "manifest.csv", index=False)
    assert "00000.png more than once" in refused(tmp_path, "ua", TINY, samples=samples, evaluator=evaluator_dir)


def test_metric_without_its_inputs_or_not_enabled_is_refused(tmp_path, evaluator_dir):
    samples = make_samples(tmp_path / "s", seed=8)
    assert "needs --reference" in refused(tmp_path, "cp_evaluator", TINY, samples=samples, evaluator=evaluator_dir)
    assert "not enabled at this scale" in refused(tmp_path, "clip", TINY, samples=samples)
    assert "unknown metric" in refused(tmp_path, "inception", TINY, samples=samples)


def test_paper_metric_without_its_weights_is_refused(tmp_path, monkeypatch):
    samples = make_samples(tmp_path / "s", seed=8)
    params = {"metrics": ["clip", "csd"], "clip_model": str(tmp_path / "no-clip"),
              "csd_checkpoint": str(tmp_path / "weights" / "checkpoint.pth")}
    message = refused(tmp_path, "csd", params, samples=samples, reference=samples)
    assert str(tmp_path / "weights" / "checkpoint.pth") in message and "learn2phoenix/CSD" in message
    assert "no-clip" in refused(tmp_path, "clip", params, samples=samples)
    # A hub id with no hub: fails at load time, naming the setting (HF_HUB_OFFLINE: no retries).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = refused(tmp_path, "clip", {**params, "clip_model": "openai/clip-vit-base-patch32"}, samples=samples)
    assert "score.clip_model" in message and "local copy" in message


def test_denoising_error_scores_a_model_on_held_out_images(tmp_path, tiny_pipe):
    """The score is `metrics.denoising.denoising_error` on the val images and captions with the
    configured draws: recomputed here from the same pipeline, it agrees, and it is reproducible."""
    from diffusers import DDPMScheduler

    from pruneforget.metrics.denoising import denoising_error
    from pruneforget.models.diffusion import encode_captions, encode_latents

    model = tmp_path / "model"
    tiny_pipe.save_pretrained(model)
    data = tmp_path / "data"
    files = _write_images(data / "images" / "val", 4, seed=11)
    captions = ["a red circle", "a blue square, dots style", "a red square", "plain painting of a blue circle"]
    pd.DataFrame({"image": [f"images/val/{f}" for f in files], "caption": captions, "image_id": range(4),
                  "style": "plain", "shape": "circle", "colour": "red", "style_word": "plain"}).to_csv(data / "val.csv", index=False)
    params = {**TINY, "metrics": ["denoising_error"], "denoising": {"images": 0, "timesteps_per_image": 2, "seed": 3}}
    doc = score(tmp_path, "denoising_error", params, model=model, data=data)
    assert set(doc) == KEYS and doc["n"] == 4 and doc["inputs"] == {"model": str(model), "data": str(data)}
    images = np.stack([np.asarray(Image.open(data / "images" / "val" / f).convert("RGB")) for f in files])
    latents = encode_latents(tiny_pipe, images)[0] * tiny_pipe.vae.config.scaling_factor
    expected = denoising_error(tiny_pipe.unet, DDPMScheduler.from_config(tiny_pipe.scheduler.config), latents,
                               encode_captions(tiny_pipe, captions), 2, 3)
    assert doc["value"] == pytest.approx(expected, rel=1e-5) and doc["value"] > 0
    assert score(tmp_path, "denoising_error", params, model=model, data=data)["value"] == doc["value"]
