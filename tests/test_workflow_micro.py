"""The micro workflow builds every table and figure of the tiny scale (`paper_figures`) end to end
with Snakemake, in a world of another seed and other removed styles than the shipped configs (no
value may be tuned to one world), leaves DVC up to date (the commit step), and a failed job
leaves no output behind; a fresh clone rebuilds the same artifacts, models byte for byte.
Slow (minutes): `pytest -m slow`."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from repo_copy import ROOT, copy_repo, run

# Not the values any shipped config uses: a config that works for one world works for another.
OTHER_WORLD = {"seed": 3, "remove_styles": ["checker"]}


def write_micro_config(repo: Path) -> None:
    """config/micro.yaml in another world, as the copy's default config (see micro_repo)."""
    config = yaml.safe_load((ROOT / "config/micro.yaml").read_text())
    config["world"].update(OTHER_WORLD)
    (repo / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def micro_repo(tmp_path_factory) -> Path:
    """A copy of the repository whose default config is the micro config, run to `rule all`.

    The micro config replaces config/config.yaml in the copy (rather than being passed with
    --configfile) because dvc.yaml records the default config's params: DVC is up to date only
    for outputs made with the config it declares, and the commit step rightly skips the rest.
    """
    repo = tmp_path_factory.mktemp("micro") / "repo"
    repo.mkdir()
    copy_repo(repo)
    assert run(["git", "init", "-q"], repo).returncode == 0  # DVC works inside a git repository
    write_micro_config(repo)
    check = run([sys.executable, "workflow/scripts/dvc_sync.py", "check"], repo)
    assert check.returncode == 0, check.stdout + check.stderr  # the micro DAG is the tiny DAG
    result = run(["snakemake", "--cores", "2", "all", "paper_figures"], repo, timeout=1200)
    assert result.returncode == 0, result.stderr[-6000:]
    return repo


@pytest.mark.slow
def test_micro_paper_figures_are_built_from_nothing_in_another_world(micro_repo):
    """APTP reaches both budgets, every method runs, every table and figure is drawn."""
    config = yaml.safe_load((micro_repo / "config/config.yaml").read_text())
    names = [n for n in config["figures"] if isinstance(config["figures"][n], dict)]
    assert len(names) >= 13, names
    for name in names:
        for suffix in ("pdf", "png", "csv"):
            assert (micro_repo / f"figures/{name}.{suffix}").exists(), f"{name}.{suffix}"
    table1 = pd.read_csv(micro_repo / "figures/table1.csv")  # long format: one row per (model, column)
    assert list(dict.fromkeys(table1["row"])) == [r["label"] for r in config["figures"]["table1"]["rows"]]
    assert table1["mean"].notna().all()


@pytest.mark.slow
def test_micro_workflow_builds_every_target(micro_repo):
    for path in ["results/tiny/data/train.csv", "results/tiny/data/val.csv", "results/tiny/evaluator",
                 "results/tiny/base", "results/tiny/samples/base/val",
                 "results/tiny/scores/base/val/judge.json", "figures/teacher_quality.pdf"]:
        assert (micro_repo / path).exists(), path
    again = run(["snakemake", "--cores", "1", "-n"], micro_repo)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_micro_run_leaves_dvc_up_to_date(micro_repo):
    status = run([sys.executable, "-m", "dvc", "status"], micro_repo)
    assert status.returncode == 0, status.stderr
    assert "up to date" in status.stdout, status.stdout


@pytest.mark.slow
def test_failed_job_leaves_no_output(micro_repo):
    # The evaluator directory is not a diffusion pipeline: sampling from it must fail.
    target = "results/tiny/samples/evaluator/val"
    result = run(["snakemake", "--cores", "1", "--", target], micro_repo)
    assert result.returncode != 0
    assert not (micro_repo / target).exists()
    leftovers = [p.name for p in (micro_repo / target).parent.glob("*tmp*")] if (micro_repo / target).parent.exists() else []
    assert not leftovers, leftovers


def _locked_outs(repo: Path) -> dict[str, str]:
    """Output path -> content hash, as dvc.lock records them."""
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


@pytest.mark.slow
def test_dvc_repro_in_a_fresh_clone_rebuilds_the_same_artifacts(micro_repo, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    copy_repo(fresh)
    assert run(["git", "init", "-q"], fresh).returncode == 0
    write_micro_config(fresh)
    repro = run([sys.executable, "-m", "dvc", "repro"], fresh)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    built, rebuilt = _locked_outs(micro_repo), _locked_outs(fresh)
    assert built and built == rebuilt

    # Models saved again after loading (sliced experts, fine-tuned, edited, bilevel runs) are
    # byte-identical too: nothing in them is initialised at random and unseeded.
    rebuild = run(["snakemake", "--cores", "2", *REBUILT_MODELS], fresh, timeout=1200)
    assert rebuild.returncode == 0, rebuild.stderr[-6000:]
    sys.path.insert(0, str(ROOT / "workflow/scripts"))
    from compare_builds import compare, digests  # timings (documented there) left out

    for model in REBUILT_MODELS:
        assert digests(micro_repo / model)
        assert compare(micro_repo / model, fresh / model) == [], model


# Every kind of model the chain re-saves: a sliced APTP expert, a distilled student, a closed-form
# edit of it, a bilevel run.
REBUILT_MODELS = ["results/tiny/expert-80", "results/tiny/ft-80-kd-pruned-s0", "results/tiny/uce-artists-s0",
                  "results/tiny/bilevel-artists-s0"]
