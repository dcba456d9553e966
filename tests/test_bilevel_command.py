"""The `bilevel` command and rules: a run directory with its records, the authors' variant, separate
mode's penalty trace as figures.fig_penalty draws it, continual unlearning, bad input failing
before anything is written, and the paper-scale rules on the SLURM profile."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

FINETUNE = {
    "steps": 99, "batch_size": 2, "micro_batch_size": 2, "lr": 1e-3, "lr_schedule": "constant_with_warmup",
    "warmup_steps": 0, "betas": [0.9, 0.999], "weight_decay": 0.0, "max_grad_norm": None, "snr_gamma": 5.0, "snr_form": "diffusers",
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
            "anchor": "plain", "subset": {"artists": "xattn", "global": "noxattn"}, "noxattn_form": "compvis",
            "prompts": {"artists": "pairs", "global": "pairs"}, "log_every": 1},
}
COMMAND = {
    "mode": "shared", "steps": 3, "k": 2, "lam": 10.0, "snr_form": "diffusers", "counting": "paper", "lower_lr": 1e-3, "upper_lr": 5e-3, "warmup_steps": 0,
    "eval_every": 3, "checkpoint_every": 0, "log_every": 1,
    "upper": {"method": "esdall", "x_t": "sample", "target_model": "teacher", "target": None, "batch_size": 1,
              "saliency_fraction": 0.1, "saliency_batches": 1},
    "code": {"lam": 0.0, "k": 2, "snr_form": "authors", "counting": "authors",
             "upper": {"x_t": "images", "noxattn_form": "authors"}},
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
    # Every authors' form: their Min-SNR and counting (steps 3 = 3 lower steps, plus 1 upper after the 2nd)
    assert (record["params"]["snr_form"], record["params"]["counting"]) == ("authors", "authors")
    assert record["params"]["upper"]["noxattn_form"] == "authors"
    assert (metrics["objective"] == "lower").sum() == 3


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


def test_bilevel_rules_dry_run_at_paper_scale_on_eight_gpus(tmp_path):
    """Every bilevel run of the paper's scale (the method, separate mode, the authors' code, a sweep
    point) from the 0.8 expert, with the paper's lambda = 100, K = 20, 20,000 iterations and the
    bilevel resources; the variants reach the command. (Upstream directories are empty stand-ins.)"""
    import re

    from repo_copy import copy_repo, run

    copy_repo(tmp_path)
    # In DAG order, so no stand-in is older than its inputs: under load the three mkdir calls get
    # different times, and an expert older than the base would make Snakemake plan APTP again.
    for stand_in in ("data", "base", "fid_reference", "expert-80"):
        (tmp_path / "results/sd21" / stand_in).mkdir(parents=True)
    targets = [f"results/sd21/{run_name}" for run_name in
               ("bilevel-artists-s0", "bilevelsep-artists-s0", "bilevelcode-global-s0", "bilevel-lam0-K20-s0")]
    result = run(["snakemake", "-n", "-p", "--profile", "slurm", "--configfile", "config/sd21.yaml", "--", *targets],
                 tmp_path, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = re.split(r"\n(?:local)?rule ", out)[1:]
    assert len([j for j in jobs if j.startswith("bilevel:")]) == 4, out
    for job in jobs:
        # fid_reference: the COCO FID statistics the periodic evaluation takes FID against
        assert "input: results/sd21/expert-80, results/sd21/base, results/sd21/data, results/sd21/fid_reference" in job
        assert "gpu=8" in job and "mem_mb=256000" in job and "runtime=4320" in job
        assert "accelerate launch --multi_gpu --num_processes 8 --main_process_port 0 -m pruneforget bilevel" in job
        assert '"lam": 100.0' in job and '"k": 20' in job and '"steps": 20000' in job
        assert '"sweep"' not in job  # the sweep's grid is not a setting of a run
    variants = re.findall(r"--variant (\w+) --seed", out)
    assert sorted(variants) == ["code", "paper", "paper", "separate"], variants  # the sweep point runs the paper's
    assert "--setting artists --variant paper --seed 0 --lam 0 --k 20" in out
