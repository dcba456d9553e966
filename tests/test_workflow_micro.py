"""Every table and figure of the tiny scale is built end to end from nothing by `snakemake`, and
Table 1 (38% of the DAG's jobs: every kind of rule but static pruning) by `dvc repro`, in two
copies of the repository whose default config is the micro config in a world of another seed and
other removed styles than the shipped configs (no value may be tuned to one world). What DVC built
is identical file by file to what Snakemake built (timings excepted), both builds leave Snakemake
and DVC with nothing to do for their targets, `dvc push` / `dvc pull` restore a third copy,
DVC's metrics, plots, params and experiments work on the result, a run with another config is
guarded, and a failed job leaves no output behind. Slow (minutes): `pytest -m slow`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import background
from repo_copy import ROOT, copy_repo, run

sys.path.insert(0, str(ROOT / "workflow/scripts"))
from compare_builds import digests  # noqa: E402  (timings, documented there, left out)

# Not the values any shipped config uses: a config that works for one world works for another.
# The global style (stripes) is among the removed ones, as in config/config.yaml: its prompt sets
# are then sampled in the per-model bundles instead of 20 jobs of their own.
OTHER_WORLD = {"seed": 3, "remove_styles": ["checker", "stripes"]}
BUILD_TIMEOUT = 1500
WARM = [sys.executable, "-m", "pruneforget", "warm", "--"]
DVC_TARGET = "report_table1"  # the stage `dvc repro` builds, with everything it depends on


def write_micro_config(repo: Path) -> None:
    """config/micro.yaml in another world, as the copy's default config (see micro_copy)."""
    config = yaml.safe_load((ROOT / "config/micro.yaml").read_text())
    config["world"].update(OTHER_WORLD)
    (repo / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def micro_copy(repo: Path) -> Path:
    """A copy of the repository whose default config is the micro config, as a git repository
    with one commit, and its dvc.yaml generated for that config (as a user who changes the default
    config does). The micro config replaces config/config.yaml rather than being passed with
    --configfile because dvc.yaml records the default config's params."""
    repo.mkdir(parents=True)
    copy_repo(repo)
    write_micro_config(repo)
    generate = run([sys.executable, "workflow/scripts/dvc_sync.py", "generate"], repo)
    assert generate.returncode == 0, generate.stdout + generate.stderr
    git_init(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "micro")
    return repo


def git(repo: Path, *args: str) -> None:
    result = run(["git", *args], repo)
    assert result.returncode == 0, result.stderr


def git_init(repo: Path) -> None:
    """A git repository with an identity of its own: DVC's experiments commit too."""
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "ci")
    git(repo, "config", "user.email", "ci@localhost")


def start_builds(base: Path) -> None:
    """The two builds of every table and figure from nothing: one by `snakemake`, one by
    `dvc repro`, each in its own copy (see micro_copy), started once per session (background.py).
    conftest.py starts them as soon as pytest has collected a test of this module, so that they
    run beside the rest of the suite, and the `builds` fixture waits for them.

    The two builds run at the same time: every micro job runs one thread however many cores it is
    given (threads come from the config), so both compute the same bytes. Siblings under one
    directory, the copies share the default DVC remote (a directory beside the repository).
    Each build's jobs fork from a warm interpreter (forkserver.py): imports were most of the
    builds' time. tests/test_forkserver.py shows a warm job writes a cold job's bytes. DVC builds
    Table 1's stages (DVC_TARGET) rather than all: CI's 20 minutes hold one full build, and the
    stages of dvc.yaml are the rules' (tests/test_dvc_sync.py), so the rest would repeat the
    same commands."""
    if not background.claim(base):
        return
    snake, dvc = micro_copy(base / "snakemake"), micro_copy(base / "dvc")
    # When the snakemake build is done, a copy of it for the DVC experiments test, which changes
    # its copy (a commit, an experiment) while the other tests read theirs on the other worker.
    build = f"{shlex.join([*WARM, 'snakemake', '--cores', '2'])} && cp -a ../snakemake ../experiments"
    background.start(["bash", "-c", build], snake, base, "snakemake")
    background.start([*WARM, sys.executable, "-m", "dvc", "repro", DVC_TARGET], dvc, base, "dvc")


@pytest.fixture(scope="module")
def builds(request) -> tuple[Path, Path]:
    """(the snakemake copy, the dvc copy), each built from nothing with its default target."""
    base = background.directory(request.config, "test_workflow_micro")
    start_builds(base)  # if conftest did not (a single test run)
    background.wait(base, ("snakemake", "dvc"), BUILD_TIMEOUT)
    return base / "snakemake", base / "dvc"


@pytest.fixture(scope="module")
def experiments(builds) -> Path:
    """A copy of the snakemake build (a sibling: the same default DVC remote), the experiments
    test's own."""
    return builds[0].parent / "experiments"


def figure_names(repo: Path) -> list[str]:
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    return [n for n in config["figures"] if isinstance(config["figures"][n], dict)]


@pytest.mark.slow
def test_snakemake_builds_every_table_and_figure_in_another_world(builds):
    """APTP reaches both budgets, every method runs, every table and figure is drawn."""
    snake, _ = builds
    names = figure_names(snake)
    assert len(names) >= 13, names
    for name in [*names, "teacher_quality"]:
        for suffix in ("pdf", "png", "csv"):
            assert (snake / f"figures/{name}.{suffix}").exists(), f"{name}.{suffix}"
    config = yaml.safe_load((snake / "config/config.yaml").read_text())
    table1 = pd.read_csv(snake / "figures/table1.csv")  # long format: one row per (model, column)
    assert list(dict.fromkeys(table1["row"])) == [r["label"] for r in config["figures"]["table1"]["rows"]]
    assert table1["mean"].notna().all()
    # The generalisation path: every world's block (the base world and each variant's scale) has its numbers.
    general = pd.read_csv(snake / "figures/table_generalisation.csv")
    assert set(general["world"]) == {"base", *config["figures"]["table_generalisation"]["variants"]}
    assert general["mean"].notna().all()


@pytest.mark.slow
@pytest.mark.parametrize("which", [0, 1], ids=["snakemake", "dvc"])
def test_either_build_leaves_snakemake_and_dvc_nothing_to_do(builds, which):
    repo = builds[which]
    targets = [[], ["figures/table1.pdf"]][which]
    again = run(["snakemake", "--cores", "1", "-n", "--", *targets], repo)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    status = run([sys.executable, "-m", "dvc", "status", *[[], [DVC_TARGET]][which]], repo)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout[-3000:]


@pytest.mark.slow
def test_dvc_repro_builds_the_same_artifacts_as_snakemake(builds):
    """Table 1's CSV and every score JSON DVC made byte for byte, and every other output too
    (models re-saved after loading, samples, run logs), timings excepted."""
    snake, dvc = builds
    assert (snake / "figures/table1.csv").read_bytes() == (dvc / "figures/table1.csv").read_bytes()
    scores = sorted(p.relative_to(dvc) for p in (dvc / "results").rglob("scores/**/*.json"))
    assert len(scores) > 20
    for path in scores:
        assert (snake / path).read_bytes() == (dvc / path).read_bytes(), path
    for tree in ("results", "figures"):
        ours, theirs = digests(snake / tree), digests(dvc / tree)
        assert theirs and set(theirs) <= set(ours), sorted(set(theirs) - set(ours))[:10]
        # .gitignore files are DVC's list of the outs it tracks: DVC built a subset of the stages.
        assert [k for k in theirs if theirs[k] != ours[k] and not k.endswith(".gitignore")] == [], tree


@pytest.mark.slow
def test_dvc_repro_of_one_figure_redraws_it_alone(builds):
    dvc, _ = builds  # the full build (recorded in dvc.lock as it went), where every figure exists
    before = {name: (dvc / f"figures/{name}.pdf").stat().st_mtime_ns for name in ("table1", "fig1")}
    redraw = run([*WARM, sys.executable, "-m", "dvc", "repro", "--force", "--single-item", "report_table1"], dvc)
    assert redraw.returncode == 0, redraw.stdout[-3000:] + redraw.stderr[-3000:]
    assert re.findall(r"Running stage '([^']+)'", redraw.stdout) == ["report_table1"]
    assert (dvc / "figures/table1.pdf").stat().st_mtime_ns > before["table1"]
    assert (dvc / "figures/fig1.pdf").stat().st_mtime_ns == before["fig1"]
    status = run([sys.executable, "-m", "dvc", "status"], dvc)
    assert "up to date" in status.stdout, status.stdout[-3000:]  # the same bytes, recorded again


@pytest.mark.slow
def test_push_then_pull_in_a_fresh_clone_leaves_nothing_to_do(builds):
    snake, _ = builds
    push = run([sys.executable, "-m", "dvc", "push"], snake, timeout=600)
    assert push.returncode == 0, push.stdout[-3000:] + push.stderr[-3000:]
    assert (snake.parent / "pruneforget-dvc-remote").is_dir()  # the default remote, beside the repository
    fresh = micro_copy(snake.parent / "fresh")
    shutil.copy(snake / "dvc.lock", fresh / "dvc.lock")  # a fork commits its dvc.lock (README)
    pull = run([sys.executable, "workflow/scripts/dvc_sync.py", "pull"], fresh, timeout=600)
    assert pull.returncode == 0, pull.stdout[-3000:] + pull.stderr[-3000:]
    assert (fresh / "figures/table1.pdf").exists()
    again = run(["snakemake", "--cores", "1", "-n"], fresh)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    status = run([sys.executable, "-m", "dvc", "status"], fresh)
    assert "up to date" in status.stdout, status.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.xdist_group("test_workflow_micro_experiments")  # beside the other follow-ups (its own copy)
def test_dvc_metrics_plots_params_and_experiments(experiments, tmp_path):
    snake = experiments
    git(snake, "add", "-A")  # the fork's record of its build: dvc.lock
    git(snake, "commit", "-q", "-m", "build")

    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], snake)
    assert shown.returncode == 0, shown.stderr
    metrics = next(iter(json.loads(shown.stdout).values()))["data"]
    judge = "results/tiny/scores/base/val/judge.json"
    assert metrics[judge]["data"]["value"] == json.loads((snake / judge).read_text())["value"]
    assert len(metrics) == len(list((snake / "results").rglob("scores/**/*.json")))

    plots = run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(tmp_path / "plots")], snake, timeout=600)
    assert plots.returncode == 0, plots.stdout[-3000:] + plots.stderr[-3000:]
    page = (tmp_path / "plots/index.html").read_text()
    for plotted in ("figures/table1.csv", "figures/fig4.csv", "ft-80-kd-pruned-s0/eval.csv", "bilevel-artists-s0/metrics.csv"):
        assert plotted in page, plotted

    # An experiment on one key reruns exactly the stages whose params hold it: Table 1's, and the
    # generalisation table's, which takes Table 1's columns (figures.table_generalisation.columns_of).
    stages = yaml.safe_load((snake / "dvc.yaml").read_text())["stages"]
    expected = {name for name, stage in stages.items()
                if any("figures.table1" in keys for p in stage.get("params", []) for keys in p.values())}
    assert expected == {"report_table1", "report_table_generalisation"}
    exp = run([*WARM, sys.executable, "-m", "dvc", "exp", "run", "-S", "config/config.yaml:figures.table1.title=Table 1 retitled"],
              snake, timeout=900)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    ran = set(re.findall(r"Running stage '([^']+)'", exp.stdout))
    assert ran == expected, sorted(ran ^ expected)

    params = run([sys.executable, "-m", "dvc", "params", "diff", "--json"], snake)
    changed = json.loads(params.stdout)["config/config.yaml"]
    assert changed == {"figures.table1.title": {"old": yaml.safe_load((ROOT / "config/micro.yaml").read_text())["figures"]["table1"]["title"],
                                                "new": "Table 1 retitled"}}
    git(snake, "commit", "-q", "-am", "retitled")
    diff = run([sys.executable, "-m", "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--all", "--json"], snake)
    assert diff.returncode == 0, diff.stderr
    compared = json.loads(diff.stdout)
    style = json.loads((snake / judge).read_text())["value"]["style_acc"]
    assert compared[judge]["value.style_acc"] == {"old": style, "new": style, "diff": 0}
    assert all(v.get("diff", 0) == 0 for scores in compared.values() for v in scores.values())  # titles change no score


@pytest.mark.slow
def test_failed_job_leaves_no_output(builds):
    snake, _ = builds
    # The evaluator directory is not a diffusion pipeline: sampling from it must fail.
    target = "results/tiny/samples/evaluator/val"
    result = run([*WARM, "snakemake", "--cores", "1", "--", target], snake)
    assert result.returncode != 0
    assert not (snake / target).exists()
    leftovers = [p.name for p in (snake / target).parent.glob("*tmp*")] if (snake / target).parent.exists() else []
    assert not leftovers, leftovers


@pytest.mark.slow
def test_dvc_repro_refuses_to_overwrite_a_run_with_another_config(tmp_path):
    """A copy with the shipped default config: data made with config/micro.yaml is named by the
    commit step, and `dvc repro` refuses to replace it until told to."""
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    git_init(repo)
    made = run(["snakemake", "--cores", "1", "--configfile", "config/micro.yaml", "--", "results/tiny/data"], repo)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "this run used config/micro.yaml" in made.stdout + made.stderr
    before = digests(repo / "results/tiny/data")
    refused = run([sys.executable, "-m", "dvc", "repro", "prepare_data"], repo)
    assert refused.returncode != 0
    assert "dvc repro refused" in refused.stdout + refused.stderr
    assert digests(repo / "results/tiny/data") == before  # nothing deleted or rewritten
    allowed = run([sys.executable, "workflow/scripts/dvc_sync.py", "allow-overwrite"], repo)
    assert allowed.returncode == 0
    rebuilt = run([sys.executable, "-m", "dvc", "repro", "prepare_data"], repo, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    assert digests(repo / "results/tiny/data") != before  # now the default config's world
