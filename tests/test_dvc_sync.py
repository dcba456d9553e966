"""dvc.yaml is the Snakemake DAG as DVC stages: the committed file agrees with the DAG, DVC's own
reading of it gives every rule's command, deps and outs exactly, a drifted copy is caught with a
diff, and outputs of a run with another config are guarded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "workflow/scripts/dvc_sync.py"
sys.path.insert(0, str(ROOT / "workflow/scripts"))

import dvc_sync  # noqa: E402


def sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def jobs() -> list[dvc_sync.Job]:
    return dvc_sync.dag_jobs()


def test_dvc_yaml_agrees_with_the_snakemake_dag():
    result = sync("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_altered_dvc_yaml_is_detected_with_a_diff(tmp_path):
    document = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    document["stages"]["prepare_data"]["deps"].pop(0)  # a dependency the DAG has but the record lost
    altered = tmp_path / "dvc.yaml"
    altered.write_text(yaml.safe_dump(document, sort_keys=False))
    result = sync("check", "--dvc-yaml", str(altered))
    assert result.returncode == 1
    assert "disagrees with the Snakemake DAG" in result.stdout
    assert "\n-" in result.stdout or "\n+" in result.stdout  # a unified diff was printed


def test_dvc_reads_one_stage_per_rule_running_exactly_its_jobs(jobs):
    """DVC's own parse of dvc.yaml against the DAG, rule by rule (and per generalisation variant's
    scale): the command builds the rule's outputs and nothing else, deps are what other rules make
    for it, outs persist (the guard)."""
    from dvc.repo import Repo

    stages = {stage.addressing: stage for stage in Repo(str(ROOT)).index.stages}
    names = {j.stage for j in jobs}
    assert set(stages) == names
    made = {o: j.stage for j in jobs for o in j.outputs}
    for name in names:
        rule_jobs = [j for j in jobs if j.stage == name]
        rule = rule_jobs[0].rule
        outputs = [o for j in rule_jobs for o in j.outputs]
        stage = stages[name]
        force = f" --forcerun {rule}" if rule.startswith("report_") else ""  # figures redraw whenever DVC runs them
        assert stage.cmd == f"snakemake --cores all --allowed-rules {rule}{force} -- {' '.join(outputs)}"
        assert [str(o.def_path) for o in stage.outs] == outputs  # outs, then metrics: see below
        assert all(o.persist for o in stage.outs)
        deps = {str(d.def_path) for d in stage.deps if not hasattr(d, "params")}
        # An input another job of the same rule makes (a continual `later` run starts from its
        # `first` run) is ordered by Snakemake inside the stage's one command, not a DVC dependency.
        wanted = {i for j in rule_jobs for i in j.inputs if not i.startswith("src/pruneforget/") and made.get(i) != name}
        assert deps == wanted | {rule_jobs[0].rule_file, "src/pruneforget"}
        assert all(made.get(d, "") != name for d in deps)  # no stage depends on itself
        params = [p for d in stage.deps if hasattr(d, "params") for p in d.params]
        # A variant's stage also reads its overlay (the generalisation section).
        variant = [] if name == rule or not rule_jobs[0].sections else ["generalisation"]
        assert params == list(rule_jobs[0].sections) + variant


def test_every_table_and_figure_is_a_stage_and_the_default_target(jobs):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    figures = [name for name, spec in config["figures"].items() if isinstance(spec, dict)]
    assert len(figures) >= 13
    for name in [*figures, "base"]:
        assert f"report_{name}" in stages, name
    made = {o for j in jobs for o in j.outputs}
    assert {f"figures/{name}.csv" for name in figures} <= made


def test_score_jsons_are_metrics_and_curves_and_figure_csvs_are_plots(jobs):
    from dvc.repo import Repo

    repo = Repo(str(ROOT))
    metrics = {str(o.def_path) for stage in repo.index.stages for o in stage.outs if o.metric}
    scores = {o for j in jobs for o in j.outputs if o.endswith(".json") and "/scores/" in o}
    assert scores and metrics == scores
    plots = [next(iter(p)) if isinstance(p, dict) else p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]]
    assert "results/tiny/ft-80-kd-pruned-s0/eval.csv" in plots  # Fig. 4 reads its evaluations
    assert "results/tiny/bilevel-artists-s0/metrics.csv" in plots
    assert "results/tiny/bilevel-artists-s0/eval.csv" not in plots  # trained with --no-eval: no such file
    assert {"figures/table1.csv", "figures/fig4.csv", "figures/table_cost.csv"} <= set(plots)


def test_stage_params_are_the_config_sections_the_rule_passes():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["prepare_data"]["params"] == [{"config/config.yaml": ["world"]}]
    assert stages["train_base"]["params"] == [{"config/config.yaml": ["base"]}]
    assert stages["sample"]["params"] == [{"config/config.yaml": ["sample"]}]


def test_dvc_yaml_is_valid_for_dvc():
    result = subprocess.run([sys.executable, "-m", "dvc", "dag", "--md"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "report_table1" in result.stdout and "sample_bundle" in result.stdout


def test_outputs_of_another_config_are_listed_and_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(dvc_sync, "ROOT", tmp_path)
    (tmp_path / "results/tiny/data").mkdir(parents=True)
    dvc_sync._update_unrecorded(set(), "config/micro.yaml", ["results/tiny/data", "results/tiny/gone"], "config/config.yaml")
    listed = json.loads((tmp_path / dvc_sync.UNRECORDED).read_text())
    assert listed == {"results/tiny/data": "config/micro.yaml"}  # what does not exist is not listed
    reason = dvc_sync.refusal(tmp_path)
    assert reason and "config/micro.yaml" in reason and "allow-overwrite" in reason
    # A default-config run that rebuilt it (DVC recorded it) lifts the refusal.
    dvc_sync._update_unrecorded({"results/tiny/data"}, None, [], "config/config.yaml")
    assert not (tmp_path / dvc_sync.UNRECORDED).exists() and dvc_sync.refusal(tmp_path) is None


def test_dvc_lock_is_not_shipped():
    """A committed dvc.lock goes stale with the next source change; a fresh clone's `dvc status`
    must describe that clone, not an old build (the README says how to commit yours)."""
    tracked = subprocess.run(["git", "ls-files", "dvc.lock"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout.strip() == ""


def test_default_remote_is_a_directory_beside_the_repository():
    result = subprocess.run([sys.executable, "-m", "dvc", "remote", "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    name, url = result.stdout.split()[:2]
    assert Path(url) == ROOT.parent / "pruneforget-dvc-remote", result.stdout
