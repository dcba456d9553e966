"""`snakemake --profile slurm` against a real single-node SLURM (workflow/scripts/local_slurm.sh),
which has no accounting, like many lab clusters: every job of the micro teacher chain and a static
pruning job is submitted with sbatch, polled with squeue and collected; a job SLURM cancels leaves
nothing that looks finished and the rerun completes it; an 8-GPU paper-scale job asks SLURM for
8 GPUs on one node. The micro paper_figures DAG (232 jobs) is not run through SLURM here: at about
10 s of start-up per job on 2 cores it alone would exceed CI's budget.

Needs root (the SLURM daemons); .ci/run starts the local SLURM before the tests and stops it after.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from repo_copy import ROOT, copy_repo, run

SCRIPT = ROOT / "workflow/scripts/local_slurm.sh"
TARGETS = ["figures/teacher_quality.pdf", "results/tiny/expert-80-magnitude"]
# A fast first poll: micro jobs take seconds (the profile's 20 s suits hour-long cluster jobs).
PROFILE = ["--profile", "slurm", "--configfile", "config/micro.yaml", "--slurm-init-seconds-before-status-checks", "2"]


def _slurm_answers() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm():
    """A running local SLURM: the one .ci/run started, else one this module starts and stops."""
    if _slurm_answers():
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root: run workflow/scripts/local_slurm.sh start as root first")
    started = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        yield
    finally:
        subprocess.run([str(SCRIPT), "stop"], capture_output=True)


def _jobs() -> dict[str, tuple[str, str]]:
    """SLURM job id -> (comment, state) of every job the controller remembers (MinJobAge)."""
    out = subprocess.run(["squeue", "-t", "all", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True, check=True).stdout
    return {i: (comment, state) for i, comment, state in (line.split("|") for line in out.splitlines())}


def _new_jobs(before: dict) -> dict[str, tuple[str, str]]:
    return {i: v for i, v in _jobs().items() if i not in before}


def _executed(log: str) -> tuple[list[str], list[str]]:
    """(rules Snakemake handed to the executor, rules it ran on this host) from its output."""
    return re.findall(r"^rule (\w+):$", log, re.M), re.findall(r"^localrule (\w+):$", log, re.M)


@pytest.fixture(scope="module")
def chain(slurm, tmp_path_factory):
    """The micro chain run through SLURM twice: once with train_base cancelled by SLURM mid-run
    (no retry), once more to complete it. Returns the copy and what each run did."""
    repo = tmp_path_factory.mktemp("slurm") / "repo"
    repo.mkdir()
    copy_repo(repo)
    assert run(["git", "init", "-q"], repo).returncode == 0

    before = _jobs()
    first = subprocess.Popen(["snakemake", *PROFILE, "--retries", "0", "--", *TARGETS], cwd=repo,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled = None
    deadline = time.time() + 300
    while cancelled is None and time.time() < deadline and first.poll() is None:
        running = [i for i, (comment, state) in _new_jobs(before).items()
                   if comment.startswith("rule_train_base_") and state == "RUNNING"]
        if running:
            time.sleep(1.0)  # inside the job: past Snakemake's start-up, into training
            subprocess.run(["scancel", running[0]], check=True)
            cancelled = running[0]
        time.sleep(0.2)
    first_log, _ = first.communicate(timeout=300)
    first_jobs = _new_jobs(before)
    left = sorted(str(p.relative_to(repo)) for p in (repo / "results/tiny").glob("base*"))
    left += [t for t in TARGETS[:1] if (repo / t).exists()]

    middle = _jobs()
    second = run(["snakemake", *PROFILE, "--", *TARGETS], repo, timeout=600)
    return {"repo": repo, "cancelled": cancelled, "left": left, "first": (first.returncode, first_log, first_jobs),
            "second": (second.returncode, second.stdout + second.stderr, _new_jobs(middle))}


@pytest.mark.slow
def test_a_job_slurm_cancels_leaves_nothing_finished_and_the_rerun_completes_it(chain):
    repo = chain["repo"]
    rc, log, jobs = chain["first"]
    assert chain["cancelled"], f"train_base never ran under SLURM:\n{log[-4000:]}"
    assert jobs[chain["cancelled"]][1] == "CANCELLED", jobs
    assert rc != 0, log[-4000:]  # Snakemake noticed the cancelled job
    # Nothing under the cancelled job's output name, and no figure built on it.
    assert chain["left"] == [], chain["left"]

    rc, log, jobs = chain["second"]
    assert rc == 0, log[-6000:]
    for target in TARGETS:
        assert (repo / target).exists(), target
    assert any(comment.startswith("rule_train_base_") and state == "COMPLETED" for comment, state in jobs.values())
    again = run(["snakemake", *PROFILE, "-n", "--", *TARGETS], repo)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


@pytest.mark.slow
def test_every_job_but_the_local_plots_ran_inside_slurm(chain):
    """Each job Snakemake handed to the executor is a SLURM job that completed (its comment names
    the rule); the only jobs on the submitting host are the workflow's declared local rules."""
    for rc, log, jobs in (chain["first"], chain["second"]):
        remote, local = _executed(log)
        submitted = sorted(comment.split("_wildcards_")[0].removeprefix("rule_") for comment, _ in jobs.values())
        assert sorted(remote) == submitted, (remote, submitted)
        assert len(re.findall(r"has been submitted with SLURM jobid", log)) == len(remote)
        assert set(local) <= {"report_base"}, local
    rc, log, jobs = chain["second"]
    assert {"train_base", "sample", "score", "prune_static"} <= set(_executed(log)[0])
    assert all(state == "COMPLETED" for _, state in jobs.values()), jobs
    assert "report_base" in _executed(log)[1]


def test_an_eight_gpu_job_asks_slurm_for_eight_gpus_on_one_node(slurm, tmp_path):
    """The plugin's own submission path for the paper's 8-GPU fine-tuning job, up to sbatch: a
    stand-in sbatch records the call (this machine has no GPU to run it)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    # The job's inputs, present (in DAG order: none older than its own inputs), so only the job runs.
    for name in ("data", "base", "fid_reference", "expert-80"):
        (repo / "results/sd21" / name).mkdir(parents=True)
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch.args"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$@" > {record}\necho "no GPUs here" >&2\nexit 1\n')
    (bin_dir / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["snakemake", "--profile", "slurm", "--configfile", "config/sd21.yaml", "--retries", "0",
                             "--allowed-rules", "finetune", "--", "results/sd21/ft-80-kd-pruned-s0"],
                            cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert record.exists(), out[-4000:]
    call = record.read_text()
    for flag in ("--gpus=8", "--nodes=1", "--mem 256000", "-t 2880", "--cpus-per-task=32"):
        assert flag in call, (flag, call)
    assert "--ntasks" not in call  # one task: accelerate, inside it, starts one process per GPU
    assert "accelerate launch --multi_gpu --num_processes 8 --main_process_port 0 -m pruneforget finetune" in out
