"""The workflow lints clean, dry-runs under the SLURM profile from the repository root at both
scales (with the paper scale's GPUs), rejects a bad config before any job, and its conda
environments list the project's dependencies."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from pruneforget.variants import scales

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_passes():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_slurm_profile_dry_run_builds_the_tiny_dag():
    verbatim = snakemake("--profile", "slurm", "-n", "figures/teacher_quality.pdf")
    assert verbatim.returncode == 0 and "Using profile slurm" in verbatim.stdout + verbatim.stderr, verbatim.stderr
    # --forceall: the whole DAG, whatever a local run has already built.
    result = snakemake("--profile", "slurm", "-n", "--forceall")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for rule in ["prepare_data", "train_evaluator", "train_vae", "train_base", "sample", "score", "report_base", "report_table1"]:
        assert re.search(rf"^{rule}\s+\d+$", out, re.M), f"{rule} missing from the tiny DAG:\n{out}"
    assert "figures/teacher_quality.pdf" in out and "figures/table1.pdf" in out


def test_slurm_profile_dry_run_at_paper_scale_asks_for_gpus():
    result = snakemake("--profile", "slurm", "-n", "--configfile", "config/sd21.yaml", "--", "results/sd21/samples/base/val")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    sample = out[out.index("rule sample:"):]
    resources = re.search(r"resources: (.*)", sample).group(1)
    assert "gpu=1" in resources and "mem_mb=64000" in resources and "runtime=720" in resources, resources
    assert "--limit 5000" in sample  # teacher-quality sampling uses sample.quality_prompts
    assert "fetch_base" in out and "train_base" not in out  # a pretrained base is fetched, not trained


def test_the_paper_scale_artist_bundle_keeps_every_prompt_fig1_shows(tmp_path):
    """sd21 samples its three artist sets in one job with --limit: the grid prompts of every set in
    the bundle are kept (the smoke's fig1 found no Starry Night when only the limit was passed)."""
    # sd21 samples whole sets (sample.eval_prompts null); a limit as the smoke's makes keeping matter.
    config = yaml.safe_load((ROOT / "config/sd21.yaml").read_text())
    config["sample"]["eval_prompts"] = 3
    (tmp_path / "sd21.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(tmp_path / "sd21.yaml"), "--", "results/sd21/samples/base/artist_monet")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    command = next(line for line in out.splitlines() if "pruneforget sample " in line)
    for prompt in ("The Starry Night by Vincent van Gogh", "Water Lilies by Claude Monet", "Guernica by Pablo Picasso"):
        assert f"--keep-prompt '{prompt}'" in command, command


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/sd21.yaml"])
def test_default_target_is_every_table_and_figure(configfile):
    """`snakemake` with no target builds paper_figures at every scale (--forceall: whatever is built here)."""
    config = yaml.safe_load((ROOT / configfile).read_text())
    result = snakemake("-n", "--forceall", "--configfile", configfile)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    figures = [name for name, spec in config["figures"].items() if isinstance(spec, dict)]
    assert len(figures) >= 13
    for name in figures:
        assert re.search(rf"^report_{name}\s+1$", out, re.M), f"report_{name} not in the default DAG of {configfile}"
    # One world per scale: the configured one and each generalisation variant's.
    assert re.search(rf"^prepare_data\s+{len(scales(config))}$", out, re.M), out


def test_bad_config_fails_before_any_job(tmp_path):
    bad = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    bad["world"]["remove_styles"] = ["not a style"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = snakemake("-n", "--configfile", str(path))
    assert result.returncode != 0
    assert "world.remove_styles" in result.stdout + result.stderr


def test_other_scale_paths_are_not_built_from_this_config():
    result = snakemake("-n", "results/sd21/data")
    assert result.returncode != 0


def _requirements(env_file: Path) -> set[str]:
    env = yaml.safe_load(env_file.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {re.sub(r"\s+", "", r) for r in pip if not r.startswith("-")}


@pytest.mark.parametrize("env, extra", [("envs/cpu.yaml", None), ("envs/cuda.yaml", "paper")])
def test_conda_envs_list_the_project_dependencies(env, extra):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Snakemake and DVC drive the jobs; they are not needed inside them.
    wanted = {d.replace(" ", "") for d in project["dependencies"] if not d.startswith(("snakemake", "dvc"))}
    if extra:
        wanted |= {d.replace(" ", "") for d in project["optional-dependencies"][extra]}
    assert _requirements(ROOT / env) == wanted


def test_bilevel_sweep_runs_the_one_at_a_time_grid_without_passing_it_to_runs():
    """`snakemake bilevel_sweep` makes every lambda at bilevel.k and every K at bilevel.lam but the
    centre (the main run), and no run receives the sweep: widening it reruns nothing made."""
    result = snakemake("-n", "-p", "--forceall", "bilevel_sweep")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    runs = sorted(set(re.findall(r"output: results/tiny/(bilevel-lam[^\s,]+)", out)))
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())["bilevel"]
    grid = ({f"bilevel-lam{lam:g}-K{cfg['k']}-s0" for lam in cfg["sweep"]["lambdas"]}
            | {f"bilevel-lam{cfg['lam']:g}-K{k}-s0" for k in cfg["sweep"]["Ks"]})
    expected = sorted(grid - {f"bilevel-lam{cfg['lam']:g}-K{cfg['k']}-s0"})
    assert runs == expected
    shells = [line for line in out.splitlines() if " bilevel --expert " in line]
    assert shells and not any('"sweep"' in line for line in shells), shells[:1]


def test_an_unknown_key_is_named_first_with_the_key_it_mistypes(tmp_path):
    """The project's message, not a dump of the 900-line schema before the key."""
    text = (ROOT / "config/config.yaml").read_text().replace("\n  steps: 200 ", "\n  stpes: 200 ", 1)
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    result = snakemake("-n", "--configfile", str(path))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown key `finetune.stpes` (a typo of `steps`?)" in out
    assert len(out.splitlines()) < 10 and "description" not in out, out[:2000]


def test_a_malformed_default_config_is_named_with_its_line(tmp_path):
    from repo_copy import copy_repo

    copy_repo(tmp_path)
    config = tmp_path / "config/config.yaml"
    config.write_text(config.read_text().replace("scale: tiny", "scale: [tiny", 1))
    result = subprocess.run(["snakemake", "-n"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert re.search(r"config/config\.yaml, line \d+, column \d+: ", result.stdout + result.stderr), result.stderr[-2000:]


def test_only_runs_a_curve_figure_plots_evaluate_while_training():
    """Fine-tuning and bilevel runs evaluate (eval.csv) exactly when a curve figure reads their
    evaluations: Figs. 4 and 5's runs do, the bilevel runs (tables read final scores) do not."""
    result = snakemake("-n", "-p", "--forceall", "paper_figures")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    flags = {m.group(2): " --no-eval " in m.group(1) for m in
             re.finditer(r"(pruneforget (?:finetune|bilevel) .*)--out results/tiny/(\S+)", out)}
    curves = {f"{stem}-s{seed}" for stem in ("ft-80-kd-pruned", "ft-80-diff-pruned", "ft-55-kd-pruned",
                                             "ft-55-diff-pruned", "ft-80-kd-random") for seed in (0, 1, 2)}
    assert {run for run, no_eval in flags.items() if not no_eval} == curves
    assert flags["bilevel-artists-s0"] and flags["ft-80-diff-random-s0"]


def test_a_bundle_samples_and_judges_a_models_evaluation_sets_in_one_job_each():
    """With `sample.bundle`, one sample_bundle and one score_bundle job per model make the seven
    evaluation sets (and their judge scores) Table 1 reads; `val` keeps its own sample job."""
    result = snakemake("-n", "-p", "--forceall", "figures/table1.pdf")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("total")[0], re.M))
    models = 19  # the teacher and 6 rows x 3 seeds
    assert counts["sample_bundle"] == str(models) and counts["score_bundle"] == str(models)
    assert counts["sample"] == str(models)  # val, for the Frechet distance
    judges = [line for line in out.splitlines() if "score --metric judge " in line]
    alone = [re.search(r"--samples results/tiny/samples/[\w-]+/(\w+) ", line).group(1)
             for line in judges if line.count("--samples ") == 1]
    assert set(alone) <= {"val"}, alone  # every other set's judge score came from its bundle
    assert sum(line.count("--samples ") == 7 for line in judges) == models
    bundle = next(line for line in out.splitlines() if "pruneforget sample " in line and "remove_dots" in line)
    assert bundle.count("--prompts ") == 7 and bundle.count("--out ") == 7
