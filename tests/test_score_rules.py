"""The scoring rules and config: one job per (model, prompt set, metric) with the inputs its metric
needs, metrics only where their world can measure them, the paper scale's FID reference and NSFW
prompt downloads in the DAG, and the FID reference's resize."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from pruneforget.config import ConfigError, validate_config
from pruneforget.metrics.fid_reference import center_crop_resize

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(["snakemake", "-n", "-p", "--forceall", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_tiny_score_jobs_get_the_inputs_their_metric_needs(tmp_path):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["score"]["reference_model"] = "base"  # a model this branch can build, as CP's reference
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = dry_run("--configfile", str(path), "--", "results/tiny/scores/base/remove_dots/cp_evaluator.json",
                  "results/tiny/scores/base/val/denoising_error.json", "results/tiny/scores/base/val/judge.json")
    cp = re.search(r"score --metric cp_evaluator (.*?) --params", out).group(1)
    assert cp == ("--samples results/tiny/samples/base/remove_dots --evaluator results/tiny/evaluator "
                  "--reference results/tiny/samples/base/remove_dots")
    assert re.search(r"score --metric denoising_error --model results/tiny/base --data results/tiny/data --params", out)
    assert re.search(r"score --metric judge --samples results/tiny/samples/base/val --evaluator results/tiny/evaluator "
                     r"--params .* --out results/tiny/scores/base/val/judge.json", out)  # a metric of `score`
    # evaluation prompts (one bundle job: sample.bundle) are drawn seeds_per_prompt times; the held-out captions once
    assert re.search(r"sample --model results/tiny/base .*--prompts results/tiny/data/prompts/remove_dots.csv "
                     r'--out results/tiny/samples/base/remove_dots .*"seeds_per_prompt": 8.* --limit 12 >', out)
    assert "--out results/tiny/samples/base/val --limit 400 --seeds-per-prompt 1" in out


def test_paper_scale_downloads_prompt_sets_and_fid_statistics_once():
    out = dry_run("--configfile", "config/sd21.yaml", "--", "results/sd21/scores/base/i2p/nudenet.json",
                  "results/sd21/scores/base/val/fid.json", "results/sd21/scores/base/val/clip.json")
    assert "fetch-prompts --name i2p" in out and "--out results/sd21/prompts/i2p.csv" in out
    assert "sample --model results/sd21/base --prompts results/sd21/prompts/i2p.csv" in out
    assert "score --metric fid --samples results/sd21/samples/base/val --reference results/sd21/fid_reference" in out
    assert re.search(r"^fid_reference_stats\s+1$", out, re.M) and re.search(r"^score\s+3$", out, re.M)


def test_metrics_belong_to_their_world():
    tiny = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    tiny["score"]["metrics"].append("csd")
    with pytest.raises(ConfigError, match="'csd' is not measured in the tiny world"):
        validate_config(tiny)
    paper = yaml.safe_load((ROOT / "config/sd21.yaml").read_text())
    del paper["score"]["clip_model"]
    with pytest.raises(ConfigError, match="score.clip_model: missing; metric 'clip'"):
        validate_config(paper)


def test_fid_reference_crops_the_central_square_and_resizes():
    image = np.zeros((30, 60, 3), np.uint8)
    image[:, 15:45] = 200  # the central 30 x 30 square
    out = center_crop_resize(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out == 200).all()
    np.testing.assert_array_equal(center_crop_resize(image[:, 15:45], 30), image[:, 15:45])  # already square, same size
