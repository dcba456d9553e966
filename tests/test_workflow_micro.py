"""The micro workflow runs end to end with Snakemake, leaves DVC up to date (the commit step), and
a failed job leaves no output behind. Slow (about a minute or two): `pytest -m slow`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from repo_copy import copy_repo, run


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
    shutil.copy(repo / "config/micro.yaml", repo / "config/config.yaml")
    check = run([sys.executable, "workflow/scripts/dvc_sync.py", "check"], repo)
    assert check.returncode == 0, check.stdout + check.stderr  # the micro DAG is the tiny DAG
    result = run(["snakemake", "--cores", "2"], repo)
    assert result.returncode == 0, result.stderr[-6000:]
    return repo


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
    shutil.copy(fresh / "config/micro.yaml", fresh / "config/config.yaml")
    repro = run([sys.executable, "-m", "dvc", "repro"], fresh)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    built, rebuilt = _locked_outs(micro_repo), _locked_outs(fresh)
    assert built and built == rebuilt
