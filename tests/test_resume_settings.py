"""Resumed work never mixes settings: every resumable job (teacher, VAE, APTP, fine-tuning, bilevel,
sampling) keeps a fingerprint of its arguments and inputs in its work directory and starts over
when a rerun's differs. Also: partial files are atomic, a failed final rename keeps the
checkpoints, and re-saved pipelines are byte-identical."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from pruneforget.cli import main
from pruneforget.io import FINGERPRINT, resumable_dir, resumable_work_path
from pruneforget.models.load import load_pipeline
from test_train_finetune import workspace  # noqa: F401 (the fine-tuning command's inputs, a fixture)

ROOT = Path(__file__).resolve().parents[1]


class Crash(Exception):
    pass


# ---- the mechanism ----------------------------------------------------------------------------

def test_resumable_dir_keeps_work_of_the_same_fingerprint_and_restarts_on_another(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        with resumable_dir(out, {"lr": 1}) as work:
            (work / "step-1").write_text("done")
            raise Crash
    with pytest.raises(Crash):
        with resumable_dir(out, {"lr": 1}) as work:
            assert (work / "step-1").exists()  # same settings: continue
            raise Crash
    assert "starting over" not in capsys.readouterr().err
    with resumable_dir(out, {"lr": 2}) as work:
        assert not (work / "step-1").exists()  # other settings: start over
    assert "other settings or inputs (lr); starting over" in capsys.readouterr().err
    assert out.is_dir() and not (out / FINGERPRINT).exists()


def test_work_without_a_fingerprint_is_not_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    work = resumable_work_path(out)
    work.mkdir()
    (work / "checkpoint.pt").write_text("from an older version")
    with resumable_dir(out, {"lr": 1}) as w:
        assert not (w / "checkpoint.pt").exists()
    assert "no fingerprint" in capsys.readouterr().err


def test_a_failed_final_rename_keeps_the_checkpoints(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def fail(*args):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        with pytest.raises(OSError):
            with resumable_dir(out, {"lr": 1}, drop=("checkpoints",)) as work:
                (work / "checkpoints").mkdir()
                (work / "checkpoints" / "step-2").write_text("state")
                (work / "model.safetensors").write_text("weights")
                m.setattr(os, "replace", fail)  # the final rename fails
    assert (resumable_work_path(out) / "checkpoints" / "step-2").exists()  # a rerun continues
    with resumable_dir(out, {"lr": 1}, drop=("checkpoints",)) as work:
        assert (work / "checkpoints" / "step-2").exists()
    assert (out / "model.safetensors").exists() and not (out / "checkpoints").exists()


# ---- the jobs: crash after a checkpoint, change one setting, rerun = a clean run of the new settings ----

@pytest.fixture(scope="module")
def micro_world(tmp_path_factory) -> tuple[Path, dict]:
    """The micro world's data and a 2-step VAE (what train-base needs)."""
    micro = yaml.safe_load((ROOT / "config/micro.yaml").read_text())
    root = tmp_path_factory.mktemp("world")
    main(["prepare-data", "--params", json.dumps(micro["world"]), "--out", str(root / "data")])
    base = json.loads(json.dumps(micro["base"]))
    base["vae"].update(steps=2)
    main(["train-vae", "--data", str(root / "data"), "--params", json.dumps(base), "--out", str(root / "vae")])
    base["unet"].update(steps=4, checkpoint_every=2, warmup_steps=1)
    return root, base


def _train_base(root: Path, base: dict, out: Path) -> None:
    main(["train-base", "--data", str(root / "data"), "--vae", str(root / "vae"), "--params", json.dumps(base),
          "--out", str(out)])


def _crash_after_first_checkpoint(monkeypatch, module) -> None:
    original = module.save_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(module, "save_checkpoint", save_then_crash)


def _same_weights(a: Path, b: Path, part: str) -> bool:
    wa, wb = load_file(a / part), load_file(b / part)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("key,value", [("lr", 5e-3)])  # one key: the fingerprint holds the whole section
def test_teacher_checkpoint_of_other_settings_is_not_resumed(micro_world, tmp_path, monkeypatch, capsys, key, value):
    import pruneforget.train.loop as loop

    root, base = micro_world
    with monkeypatch.context() as m:
        _crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            _train_base(root, base, tmp_path / "cut")
    changed = json.loads(json.dumps(base))
    changed["unet"][key] = value
    _train_base(root, changed, tmp_path / "cut")
    assert "starting over" in capsys.readouterr().err
    _train_base(root, changed, tmp_path / "clean")
    _train_base(root, base, tmp_path / "old")
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert _same_weights(tmp_path / "cut", tmp_path / "clean", unet)
    assert not _same_weights(tmp_path / "cut", tmp_path / "old", unet)


def test_vae_checkpoint_of_other_settings_is_not_resumed(micro_world, tmp_path, monkeypatch, capsys):
    import pruneforget.train.loop as loop

    root, base = micro_world
    params = json.loads(json.dumps(base))
    params["vae"].update(steps=4, checkpoint_every=2)

    def train_vae(p: dict, out: str) -> None:
        main(["train-vae", "--data", str(root / "data"), "--params", json.dumps(p), "--out", str(tmp_path / out)])

    with monkeypatch.context() as m:
        _crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            train_vae(params, "cut")
    changed = json.loads(json.dumps(params))
    changed["vae"]["lr"] = 5e-3
    train_vae(changed, "cut")
    assert "starting over" in capsys.readouterr().err
    train_vae(changed, "clean")
    assert _same_weights(tmp_path / "cut", tmp_path / "clean", "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("key,value", [("loss_weights", {"diff": 1.0, "out_kd": 0.0, "feat_kd": 0.0}),
                                       ("snr_gamma", None), ("max_grad_norm", 0.01)])
def test_finetune_checkpoint_of_other_settings_is_not_resumed(workspace, monkeypatch, capsys, key, value):
    import pruneforget.train.loop as loop
    from test_train_finetune import FT, command

    params = {**FT, "eval_every": 0, "checkpoint_every": 1}
    with monkeypatch.context() as m:
        _crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            main(command(workspace, out="cut", params=params))
    changed = {**params, key: value}
    main(command(workspace, out="cut", params=changed))
    assert "starting over" in capsys.readouterr().err
    main(command(workspace, out="clean", params=changed))
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert _same_weights(workspace / "cut", workspace / "clean", unet)
    assert json.loads((workspace / "cut/run_config.json").read_text())["params"][key] == value


def _sample(model: Path, prompts: Path, guidance: float, out: Path) -> None:
    params = {"scheduler": "ddim", "steps": 2, "guidance": guidance, "batch_size": 2}
    main(["sample", "--model", str(model), "--prompts", str(prompts), "--params", json.dumps(params), "--out", str(out)])


@pytest.fixture()
def sample_inputs(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "model")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt\na red circle\na blue square\na red square\na blue circle\n")
    return tmp_path / "model", prompts


def test_sample_images_of_other_settings_are_not_kept(sample_inputs, tmp_path, monkeypatch):
    import pruneforget.sample as sample_module

    model, prompts = sample_inputs
    original = sample_module.generate
    calls = []

    def crash_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Crash
        return original(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(sample_module, "generate", crash_on_second_batch)
        with pytest.raises(Crash):
            _sample(model, prompts, 5.0, tmp_path / "cut")
    assert len(list(resumable_work_path(tmp_path / "cut").glob("*.png"))) == 2
    _sample(model, prompts, 1.0, tmp_path / "cut")
    _sample(model, prompts, 1.0, tmp_path / "clean")
    for name in sorted(p.name for p in (tmp_path / "clean").glob("*.png")):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "cut" / name)),
                                      np.asarray(Image.open(tmp_path / "clean" / name)), err_msg=name)


def test_a_png_cut_short_by_a_kill_is_never_kept(sample_inputs, tmp_path, monkeypatch):
    """A kill mid-write leaves a temporary file, never a truncated `NNNNN.png` a rerun would keep."""
    model, prompts = sample_inputs
    original = Image.Image.save

    def write_half_then_die(self, fp, *args, **kwargs):
        original(self, fp, *args, **kwargs)
        Path(fp).write_bytes(Path(fp).read_bytes()[:40])
        raise Crash

    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", write_half_then_die)
        with pytest.raises(Crash):
            _sample(model, prompts, 5.0, tmp_path / "cut")
    assert not list(resumable_work_path(tmp_path / "cut").glob("0*.png"))
    _sample(model, prompts, 5.0, tmp_path / "cut")
    for png in (tmp_path / "cut").glob("*.png"):
        Image.open(png).load()  # raises on a truncated file


# ---- reproducibility -------------------------------------------------------------------------------

def test_a_resaved_pipeline_is_byte_identical(tiny_pipe, tmp_path):
    """The MiniLM text encoder is loaded without a (randomly initialised) pooler."""
    tiny_pipe.save_pretrained(tmp_path / "saved")
    for copy in ("a", "b"):
        torch.manual_seed(hash(copy) % 1000)  # whatever the global RNG holds
        load_pipeline(tmp_path / "saved").save_pretrained(tmp_path / copy)
    weights = "text_encoder/model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert not any(k.startswith("pooler") for k in load_file(tmp_path / "a" / weights))


# ---- bad prompt sets: refused before any model is loaded, naming the file and the row ----------------

@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("prompt\n", "has a header and no prompts"),
    ("text\na red circle\n", "needs a `prompt` (or `caption`) column"),
    ("prompt\na red circle\n\"\"\na blue square\n", "row 3 (line of the file) has an empty prompt"),
])
def test_a_bad_prompt_set_is_refused_before_the_model_loads(tmp_path, monkeypatch, text, message):
    import pruneforget.commands.sample as sample_command

    prompts = tmp_path / "prompts.csv"
    prompts.write_text(text)
    monkeypatch.setattr(sample_command, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit, match=str(prompts).replace(".", r"\.")) as exc:
        _sample(tmp_path / "no-model", prompts, 5.0, tmp_path / "out")
    assert message in str(exc.value)
    assert not (tmp_path / "out").exists() and not resumable_work_path(tmp_path / "out").exists()


# ---- a corrupted checkpoint names the work directory to delete --------------------------------------

def test_a_corrupted_teacher_checkpoint_names_the_work_directory(micro_world, tmp_path, monkeypatch):
    import pruneforget.train.loop as loop

    root, base = micro_world
    with monkeypatch.context() as m:
        _crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            _train_base(root, base, tmp_path / "cut")
    work = resumable_work_path(tmp_path / "cut")
    for f in (work / "checkpoints").rglob("*.safetensors"):
        f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=f"delete the work directory {work}".replace(".", r"\.")):
        _train_base(root, base, tmp_path / "cut")


def test_a_corrupted_finetune_checkpoint_names_the_work_directory(workspace, monkeypatch):
    import pruneforget.train.loop as loop
    from test_train_finetune import FT, command

    params = {**FT, "eval_every": 0, "checkpoint_every": 1}
    with monkeypatch.context() as m:
        _crash_after_first_checkpoint(m, loop)
        with pytest.raises(Crash):
            main(command(workspace, out="cut", params=params))
    work = resumable_work_path(workspace / "cut")
    for f in (work / "checkpoints").rglob("*.safetensors"):
        f.write_bytes(b"not a tensor file")
    with pytest.raises(RuntimeError, match=r"corrupted: delete the work directory .*\.cut\.work"):
        main(command(workspace, out="cut", params=params))
