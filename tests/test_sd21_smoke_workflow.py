"""The paper-scale DAG executes: `snakemake --configfile config/sd21_smoke.yaml paper_figures` from
an empty results/, on the stand-ins `make-standins` builds, runs every rule the cluster run runs
(COCO, the prompt downloads and their lock, SD 2.1's loaders, APTP with the mpnet router, 2-process
accelerate jobs, every unlearning method, CLIP / CP / CSD / FID / NudeNet scores, every report),
and a rerun has nothing to do. Slow (minutes): conftest.py starts the build right after
collection, beside the rest of the suite, like the micro builds."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
import background
from repo_copy import copy_repo, run

CONFIG = "config/sd21_smoke.yaml"
BUILD_TIMEOUT = 1500
# Rules a cluster user's first `paper_figures` runs at sd21; each must have run at least once.
PAPER_RULES = {"fetch_base", "prepare_data", "fetch_prompt_set", "fid_reference_stats", "prune_aptp", "extract_expert",
               "finetune", "unlearn", "bilevel", "sample", "score", "report_table1"}


def start_builds(base: Path) -> None:
    """make-standins, then the smoke's paper_figures under a warm interpreter, in a copy of the
    repository (its own src/ on PYTHONPATH, as the workflow's jobs have it), started once per
    session (background.py). One thread per job (--max-threads 1): beside the micro builds and
    the suite, the 2 cores are oversubscribed, and a 2-thread OpenMP job there ran 25x slower
    (APTP: 7.5 s a step instead of 0.3 s)."""
    if not background.claim(base):
        return
    repo = base / "repo"
    repo.mkdir()
    copy_repo(repo)
    py = sys.executable
    script = (f"{py} -m pruneforget make-standins && "
              f"{py} -m pruneforget warm -- snakemake --cores 2 --max-threads 1 --configfile {CONFIG} -- paper_figures")
    env = {**os.environ, "PYTHONPATH": "src"}
    env.pop("PRUNEFORGET_FORKSERVER", None)
    background.start(["bash", "-c", f"set -e; {script}"], repo, base, "smoke", env=env)


@pytest.fixture(scope="module")
def smoke(request) -> Path:
    """The copy of the repository the smoke built (its log beside it, in smoke.log)."""
    base = background.directory(request.config, "test_sd21_smoke_workflow")
    start_builds(base)  # if conftest did not (a single test run)
    background.wait(base, ("smoke",), BUILD_TIMEOUT)
    return base / "repo"


@pytest.mark.slow
def test_smoke_builds_every_table_and_figure_of_the_paper_scale(smoke):
    config = yaml.safe_load((smoke / CONFIG).read_text())
    names = [n for n, spec in config["figures"].items() if isinstance(spec, dict)]
    assert len(names) >= 12, names
    for name in names:
        for suffix in ("pdf", "png", "csv"):
            assert (smoke / f"figures/{name}.{suffix}").exists(), f"{name}.{suffix}"
    table1 = pd.read_csv(smoke / "figures/table1.csv")
    assert list(dict.fromkeys(table1["row"])) == [r["label"] for r in config["figures"]["table1"]["rows"]]
    ran = set(re.findall(r"^(?:local)?rule (\w+):", (smoke.parent / "smoke.log").read_text(), flags=re.M))
    assert PAPER_RULES <= ran, sorted(PAPER_RULES - ran)
    # Every rule of the cluster's DAG (config/sd21.yaml, from nothing) ran in the smoke.
    dry = run(["snakemake", "-n", "--cores", "1", "--configfile", "config/sd21.yaml", "--", "paper_figures"], smoke)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    cluster = set(re.findall(r"^(?:local)?rule (\w+):", dry.stdout, flags=re.M))
    assert PAPER_RULES <= cluster and cluster <= ran, sorted(cluster - ran)
    assert (smoke / "results/sd21_smoke").is_dir() and not (smoke / "results/sd21").exists()


@pytest.mark.slow
def test_smoke_training_jobs_ran_on_two_processes(smoke):
    """Fine-tuning and bilevel went through accelerate's launcher with 2 processes, as the 8-GPU
    jobs do with 8 (each run records the processes it ran on)."""
    runs = [p.parent for p in (smoke / "results/sd21_smoke").glob("*/run_config.json")
            if p.parent.name.startswith(("ft-", "bilevel"))]
    assert len(runs) >= 10, runs
    for path in runs:
        assert json.loads((path / "run_config.json").read_text())["num_processes"] == 2, path.name


@pytest.mark.slow
def test_smoke_rerun_has_nothing_to_do(smoke):
    again = run(["snakemake", "--cores", "1", "-n", "--configfile", CONFIG, "--", "paper_figures"], smoke)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
