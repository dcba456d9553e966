#!/usr/bin/env python
"""Keep DVC's record of the pipeline in step with the Snakemake DAG: Snakemake executes, DVC records.

    python workflow/scripts/dvc_sync.py generate   # write dvc.yaml from the DAG
    python workflow/scripts/dvc_sync.py check      # exit 1 with a diff if dvc.yaml and the DAG disagree
    python workflow/scripts/dvc_sync.py commit     # record finished outputs in DVC (after `snakemake`)
    python workflow/scripts/dvc_sync.py pull       # `dvc pull`, then `snakemake --touch`

dvc.yaml holds one stage per Snakemake job of the default config (config/config.yaml): its
command runs exactly that job, its deps are the job's inputs plus the rule's .smk file and the
package source, its params are the config sections the rule passes to its command (a rule's
params keys are section names, see rules/common.smk), its outs are the job's outputs.

Why a commit step: a direct `snakemake` run leaves DVC's lock file behind, and the next
`dvc repro` would redo everything. The Snakefile's onsuccess handler therefore runs `commit`,
which records every stage whose outputs Snakemake itself considers up to date under the config
dvc.yaml declares. A run with another config (config/micro.yaml) leaves those stages out, since
Snakemake sees their params changed: DVC never records outputs under params they were not made with.

Why `pull` touches: `dvc pull`/`dvc checkout` write files in arbitrary order, so their
modification times no longer follow the DAG and Snakemake would rebuild them.

The jobs come from Snakemake's Python API. It prints DAGs but does not return them, so this
script builds the DAG through the two steps every DAG-printing command uses (`_prepare_dag`,
`_build_dag`); pinned Snakemake (<10) and tests/test_dvc_sync.py guard that contract.
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "config/config.yaml"
DVC_YAML = "dvc.yaml"
SOURCE_DIR = "src/pruneforget"
HEADER = (
    "# Generated from the Snakemake DAG by `python workflow/scripts/dvc_sync.py generate`; do not edit.\n"
    "# Each stage runs one Snakemake job; tests/test_dvc_sync.py checks this file agrees with the DAG.\n"
)


@dataclass(frozen=True)
class Job:
    """What dvc.yaml needs to know about one Snakemake job."""

    rule: str
    rule_file: str  # relative to the repository root
    wildcards: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sections: tuple[str, ...]  # config sections the rule passes to its command
    up_to_date: bool  # Snakemake would not rerun it (outputs exist, nothing changed)


def dag_jobs(configfile: str = DEFAULT_CONFIG, root: Path = ROOT) -> list[Job]:
    """Every job of the workflow's default target under `configfile`, in DAG order."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    config_path = (root / configfile).resolve()
    config = yaml.safe_load(config_path.read_text())
    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            workflow_api = api.workflow(
                snakefile=root / "Snakefile",
                workdir=root,
                config_settings=ConfigSettings(configfiles=[config_path]),
                resource_settings=ResourceSettings(cores=1),
            )
            workflow_api.dag(DAGSettings())  # attaches the DAG settings to the workflow
            workflow = workflow_api._workflow
            # lock_warn_only: this also runs inside a Snakemake run's onsuccess, which holds the lock.
            workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True)
            workflow._build_dag()
            dag = workflow.dag
            jobs = []
            for j in dag.jobs:
                if not j.output:  # target-only rules such as `all`
                    continue
                jobs.append(
                    Job(
                        rule=j.rule.name,
                        rule_file=os.path.relpath(j.rule.snakefile, root),
                        wildcards=tuple((k, str(v)) for k, v in j.wildcards.items()),
                        inputs=tuple(str(f) for f in j.input),
                        outputs=tuple(str(f) for f in j.output),
                        sections=tuple(k for k in j.params.keys() if k in config),
                        up_to_date=not dag.needrun(j),
                    )
                )
    finally:
        os.chdir(cwd)
    # Stable order independent of how Snakemake groups a topological level.
    order = {name: i for i, name in enumerate(_topo_names(jobs))}
    return sorted(jobs, key=lambda j: order[stage_name(j)])


def _topo_names(jobs: list[Job]) -> list[str]:
    """Stage names in dependency order, ties broken by name (Snakemake's set order is arbitrary)."""
    producer = {out: stage_name(j) for j in jobs for out in j.outputs}
    deps = {stage_name(j): {producer[i] for i in j.inputs if i in producer} for j in jobs}
    done: list[str] = []
    while len(done) < len(deps):
        ready = sorted(n for n, d in deps.items() if n not in done and d <= set(done))
        if not ready:
            raise RuntimeError(f"cycle among stages {sorted(set(deps) - set(done))}")
        done.extend(ready)
    return done


def stage_name(job: Job) -> str:
    """`rule` or `rule-wildcard-values` (DVC stage names allow letters, digits, `-`, `_`)."""
    values = [v for _, v in job.wildcards]
    name = "-".join([job.rule, *values])
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def stage_cmd(job: Job, configfile: str) -> str:
    """The command that runs exactly this job. DVC has already decided the stage must run (and
    removed its outputs): --force runs the job whatever Snakemake thinks of it, --allowed-rules
    keeps Snakemake from (re)running any upstream job, which DVC owns as other stages."""
    config = "" if configfile == DEFAULT_CONFIG else f" --configfile {configfile}"
    # --cores all: a job's threads are min(config threads, cores), and CPU float results depend
    # on the thread count, so a DVC stage must get the threads a direct `snakemake --cores N` run
    # gives it on the same machine to rebuild byte-identical artifacts.
    return f"snakemake --cores all{config} --allowed-rules {job.rule} --force -- {' '.join(job.outputs)}"


def render(jobs: list[Job], configfile: str = DEFAULT_CONFIG) -> str:
    """dvc.yaml text for the jobs (deterministic: the same DAG gives the same bytes)."""
    stages = {}
    for job in jobs:
        stage: dict = {"cmd": stage_cmd(job, configfile)}
        # Source files a rule lists as inputs (the figures' drawing code) are inside SOURCE_DIR already.
        inputs = [i for i in job.inputs if not i.startswith(SOURCE_DIR + "/")]
        stage["deps"] = list(dict.fromkeys([*inputs, job.rule_file, SOURCE_DIR]))
        if job.sections:
            stage["params"] = [{configfile: list(job.sections)}]
        stage["outs"] = list(job.outputs)
        stages[stage_name(job)] = stage
    return HEADER + yaml.safe_dump({"stages": stages}, sort_keys=False, width=1000)


def generate(configfile: str) -> int:
    (ROOT / DVC_YAML).write_text(render(dag_jobs(configfile), configfile))
    print(f"wrote {DVC_YAML}")
    return 0


def check(configfile: str, path: str = DVC_YAML) -> int:
    """0 when `path` equals what `generate` would write; else print a unified diff and return 1."""
    expected = render(dag_jobs(configfile), configfile)
    file = ROOT / path
    actual = file.read_text() if file.exists() else ""
    if actual == expected:
        print(f"{path} agrees with the Snakemake DAG")
        return 0
    sys.stdout.writelines(
        difflib.unified_diff(actual.splitlines(True), expected.splitlines(True), f"{path} (on disk)", f"{path} (from the DAG)")
    )
    print(f"\n{path} disagrees with the Snakemake DAG; run: python workflow/scripts/dvc_sync.py generate")
    return 1


def commit(configfile: str) -> int:
    """`dvc commit` every stage whose job Snakemake considers up to date under `configfile`."""
    if not (ROOT / ".dvc").is_dir() or not (ROOT / DVC_YAML).exists():
        print("dvc_sync commit: no DVC project or dvc.yaml here; nothing to record")
        return 0
    declared = yaml.safe_load((ROOT / DVC_YAML).read_text())["stages"]
    ready = [stage_name(j) for j in dag_jobs(configfile) if j.up_to_date and stage_name(j) in declared]
    if not ready:
        print("dvc_sync commit: no finished stage to record")
        return 0
    print(f"dvc_sync commit: recording {len(ready)} stage(s): {', '.join(ready)}")
    # --force: commit without asking, although deps/outs changed since the last record (that is the point).
    return subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", *ready], cwd=ROOT).returncode


def pull(configfile: str) -> int:
    """Fetch outputs from the DVC remote, then restore modification times in DAG order."""
    rc = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=ROOT).returncode
    if rc:
        return rc
    config = [] if configfile == DEFAULT_CONFIG else ["--configfile", configfile]
    return subprocess.run(["snakemake", "--cores", "1", "--touch", *config], cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check", "commit", "pull"])
    parser.add_argument("--configfile", default=DEFAULT_CONFIG, help="config the DVC stages record (default: %(default)s)")
    parser.add_argument("--dvc-yaml", default=DVC_YAML, help="file to compare, for `check` (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.configfile, args.dvc_yaml)
    return {"generate": generate, "commit": commit, "pull": pull}[args.command](args.configfile)


if __name__ == "__main__":
    sys.exit(main())
