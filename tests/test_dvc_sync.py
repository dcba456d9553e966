"""dvc.yaml is the Snakemake DAG as DVC stages: the committed file agrees with the DAG, and a
drifted copy is caught with a diff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "workflow/scripts/dvc_sync.py"


def sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_dvc_yaml_agrees_with_the_snakemake_dag():
    result = sync("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_altered_dvc_yaml_is_detected_with_a_diff(tmp_path):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stage = next(iter(stages.values()))
    stage["deps"].pop(0)  # a dependency the DAG has but the record lost
    altered = tmp_path / "dvc.yaml"
    altered.write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    result = sync("check", "--dvc-yaml", str(altered))
    assert result.returncode == 1
    assert "disagrees with the Snakemake DAG" in result.stdout
    assert "\n-" in result.stdout or "\n+" in result.stdout  # a unified diff was printed


def test_every_stage_runs_one_snakemake_job_for_its_outputs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages
    for name, stage in stages.items():
        assert stage["cmd"].startswith("snakemake --cores all "), name
        assert "--allowed-rules " in stage["cmd"] and "--force" in stage["cmd"], name
        assert stage["cmd"].endswith("-- " + " ".join(stage["outs"])), name
        assert "src/pruneforget" in stage["deps"], name


def test_stage_params_are_the_config_sections_the_rule_passes():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = {name: stage.get("params", [{}])[0].get("config/config.yaml") for name, stage in stages.items()}
    assert params["prepare_data-tiny"] == ["world"]
    assert params["train_base-tiny"] == ["base"]
    assert params["sample-tiny-base-val"] == ["sample"]


def test_dvc_yaml_is_valid_for_dvc():
    result = subprocess.run([sys.executable, "-m", "dvc", "dag", "--md"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "report_base" in result.stdout
