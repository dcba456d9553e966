#!/usr/bin/env python
"""Keep DVC's record of the pipeline in step with the Snakemake DAG: Snakemake executes, DVC records.

    python workflow/scripts/dvc_sync.py generate          # write dvc.yaml from the DAG
    python workflow/scripts/dvc_sync.py check             # exit 1 with a diff if dvc.yaml and the DAG disagree
    python workflow/scripts/dvc_sync.py commit            # record finished outputs in DVC (after `snakemake`)
    python workflow/scripts/dvc_sync.py pull              # `dvc pull`, then `snakemake --touch`
    python workflow/scripts/dvc_sync.py allow-overwrite   # let `dvc repro` replace another config's outputs

dvc.yaml describes every job of the default target (`rule all`: every table and figure) under the
default config (config/config.yaml), one DVC stage per Snakemake rule, named after the rule
(`train_base`, `sample`, `report_table1`). A stage's command is one Snakemake call for all of its
rule's outputs (`--allowed-rules RULE`), so the rule's jobs run in parallel as in a direct
`snakemake` run; its deps are the rule's inputs made by other rules, the rule's .smk file and the
package source; its params are the config sections the rule passes to its command (a rule's params
keys are section names, see rules/common.smk), or the dotted keys a rule lists in its `dvc_params`
param when it reads less than a section (a figure: its own spec, not every figure's); its outs are the rule's outputs, score JSONs as DVC
metrics. Training curves and the figures' CSVs are DVC plots.

Why per rule, not per job: DVC runs stages one at a time and rewrites dvc.lock after each, so a
stage per job ran the micro DAG slower than `snakemake --cores 1` (1,022 s against 880 s, side by
side) and `dvc commit` spent 84 of 107 s re-parsing the lock for 10 stages (README).

Outputs are `persist: true`: DVC leaves them in place and the stage's Snakemake call decides,
job by job, what to rebuild (a changed input or params, a missing output) and removes those
outputs itself. So a stage reruns only the jobs that changed, and a stage refused by the guard
below deletes nothing. As in a direct run, an edit of training or sampling code reruns nothing
(DVC records the new source): `snakemake --forcerun RULE` does (README).

Why a commit step: a direct `snakemake` run leaves DVC's lock file behind, and the next
`dvc repro` would redo everything. The Snakefile's onsuccess handler therefore runs `commit`,
which records every stage whose outputs Snakemake itself considers up to date under the config
dvc.yaml declares. A run with another config (`--configfile config/one_seed.yaml`) is not
recorded: the commit step says so and lists its outputs in results/unrecorded.json, and while that
file names an existing output, every DVC stage refuses to run (the Snakefile's guard), so that
`dvc repro` cannot silently overwrite them with the default config's settings.

Why `pull` touches: `dvc pull`/`dvc checkout` write files in arbitrary order, so their
modification times no longer follow the DAG and Snakemake would rebuild them.

The jobs come from Snakemake's Python API. It prints DAGs but does not return them, so this
script builds the DAG through the two steps every DAG-printing command uses (`_prepare_dag`,
`_build_dag`); pinned Snakemake (<10) and tests/test_dvc_sync.py guard that contract.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "config/config.yaml"
DVC_YAML = "dvc.yaml"
SOURCE_DIR = "src/pruneforget"
NO_COMMIT = "PRUNEFORGET_NO_DVC_COMMIT"  # set: a Snakemake run does not run the commit step
UNRECORDED = "results/unrecorded.json"  # outputs of a run with another config (see the docstring)
HEADER = (
    "# Generated from the Snakemake DAG by `python workflow/scripts/dvc_sync.py generate`; do not edit.\n"
    "# One stage per rule (a foreach over its jobs); tests/test_dvc_sync.py checks it agrees with the DAG.\n"
)


@dataclass(frozen=True)
class Job:
    """What dvc.yaml needs to know about one Snakemake job."""

    rule: str
    rule_file: str  # relative to the repository root
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sections: tuple[str, ...]  # config sections (or dotted keys) the rule's command reads
    up_to_date: bool  # Snakemake would not rerun it (outputs exist, nothing changed)
    stage: str = ""  # its DVC stage (stage_name); empty: the rule's name


def stage_name(rule: str, scale: str | None, config_scale: str) -> str:
    """A job's DVC stage: its rule, or `{rule}-{scale}` for a job of a generalisation variant's
    scale (pruneforget/variants.py), so adding a variant adds stages and leaves the configured
    scale's stages (their commands, hence dvc.lock) as they were."""
    return rule if scale in (None, config_scale) else f"{rule}-{scale}"


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
                        inputs=tuple(str(f) for f in j.input),
                        outputs=tuple(str(f) for f in j.output),
                        sections=tuple(j.params["dvc_params"]) if "dvc_params" in j.params.keys()
                        else tuple(k for k in j.params.keys() if k in config),
                        up_to_date=not dag.needrun(j),
                        stage=stage_name(j.rule.name, j.wildcards_dict.get("scale"), config["scale"]),
                    )
                )
    finally:
        os.chdir(cwd)
    # Stable order independent of how Snakemake groups a topological level.
    order = {job: i for i, job in enumerate(_topo_order(jobs))}
    return sorted(jobs, key=order.__getitem__)


def _topo_order(jobs: list[Job]) -> list[Job]:
    """Jobs in dependency order, ties broken by rule and outputs (Snakemake's set order is arbitrary)."""
    producer = {out: j for j in jobs for out in j.outputs}
    deps = {j: {producer[i] for i in j.inputs if i in producer} for j in jobs}
    done: list[Job] = []
    placed: set[Job] = set()
    while len(done) < len(deps):
        ready = sorted((j for j, d in deps.items() if j not in placed and d <= placed), key=lambda j: (j.rule, j.outputs))
        if not ready:
            raise RuntimeError(f"cycle among jobs of rules {sorted({j.rule for j in deps if j not in placed})}")
        done.extend(ready)
        placed.update(ready)
    return done


# --- From jobs to stages: one stage per rule, whose command runs the rule's jobs ---------------


def _deps(job: Job) -> list[str]:
    # Source files a rule lists as inputs (the figures' drawing code) are inside SOURCE_DIR already.
    return [i for i in job.inputs if not i.startswith(SOURCE_DIR + "/")]


def is_metric(path: str) -> bool:
    """Score JSONs are DVC metrics (`dvc metrics show`); every other output is a plain out."""
    return path.endswith(".json") and "/scores/" in path


def stage_cmd(rule: str, outputs: list[str], configfile: str) -> str:
    """One Snakemake call for a rule's outputs: --allowed-rules keeps it from running any upstream
    job (DVC owns those as other stages); Snakemake runs the rule's jobs that need it, in parallel
    on --cores all, and skips the others, as a direct `snakemake` run would."""
    config = "" if configfile == DEFAULT_CONFIG else f" --configfile {configfile}"
    # A figure takes seconds: whenever DVC runs its stage (`dvc repro -f report_table1` included),
    # it is redrawn.
    force = f" --forcerun {rule}" if all(o.startswith("figures/") for o in outputs) else ""
    # --cores all: a job's threads are min(config threads, cores), and CPU float results depend
    # on the thread count, so a DVC stage must get the threads a direct `snakemake --cores N` run
    # gives it on the same machine to rebuild byte-identical artifacts.
    return f"snakemake --cores all{config} --allowed-rules {rule}{force} -- {' '.join(outputs)}"


def _by_rule(jobs: list[Job]) -> dict[str, list[Job]]:
    """Each stage's jobs (a rule's, per scale: stage_name), stages in dependency order (ties: the
    order of their first job)."""
    rules: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        rules[job.stage or job.rule].append(job)
    producer = {out: j.stage or j.rule for j in jobs for out in j.outputs}
    needs = {rule: {producer[i] for j in rule_jobs for i in j.inputs if i in producer} - {rule} for rule, rule_jobs in rules.items()}
    order: list[str] = []
    while len(order) < len(rules):
        rule = next(r for r in rules if r not in order and needs[r] <= set(order))  # the rule graph is acyclic (tested)
        order.append(rule)
    return {rule: rules[rule] for rule in order}


def stages_of(jobs: list[Job], configfile: str = DEFAULT_CONFIG) -> dict[str, dict]:
    """dvc.yaml's stages: one per rule, named after it (a DVC stage per job would run the jobs one
    at a time, and DVC rewrites dvc.lock after every stage: the module docstring)."""
    stages: dict[str, dict] = {}
    for rule, rule_jobs in _by_rule(jobs).items():
        outs = [o for j in rule_jobs for o in j.outputs]
        made = set(outs)
        inputs = [i for j in rule_jobs for i in _deps(j) if i not in made]
        stage: dict = {"cmd": stage_cmd(rule_jobs[0].rule, outs, configfile),
                       "deps": list(dict.fromkeys([*sorted(set(inputs)), rule_jobs[0].rule_file, SOURCE_DIR]))}
        sections = list(rule_jobs[0].sections)
        if sections and rule_jobs[0].stage not in ("", rule_jobs[0].rule):
            sections.append("generalisation")  # a variant's job reads the config with its overlay
        if sections:
            stage["params"] = [{configfile: sections}]
        for kind, paths in (("outs", [o for o in outs if not is_metric(o)]), ("metrics", [o for o in outs if is_metric(o)])):
            if paths:
                # persist: DVC leaves outputs in place; the rule's Snakemake call replaces those
                # that need it (see the module docstring).
                stage[kind] = [{path: {"persist": True}} for path in paths]
        stages[rule] = stage
    return stages


def plots_of(jobs: list[Job], evaluated: set[str]) -> list:
    """Top-level plots: each training run's loss curve (metrics.csv), the evaluations of the runs a
    curve figure reads (eval.csv), and every figure's CSV of plotted numbers."""
    plots: list = []
    for job in jobs:
        if job.rule in ("finetune", "bilevel"):
            run = job.outputs[0]
            plots.append({f"{run}/metrics.csv": {"x": "step", "y": "total"}})
            if run in evaluated:
                plots.append({f"{run}/eval.csv": {"x": "step"}})
        csvs = [o for o in job.outputs if o.startswith("figures/") and o.endswith(".csv")]
        for csv in csvs:
            header = _figure_csv_columns(job.rule)
            plots.append({csv: header} if header else csv)
    return plots


def _figure_csv_columns(rule: str) -> dict | None:
    """How a figure's CSV plots: curves by step, tables and bars as horizontal bars of their means;
    an image grid's CSV (a list of files) plots its PNG instead (None: no field mapping)."""
    if rule in ("report_fig4", "report_fig5", "report_fig_penalty"):
        return {"x": "step", "y": "mean"}
    if rule in ("report_fig1", "report_fig2", "report_fig6", "report_base"):
        return None
    if rule == "report_table_cost":
        return {"template": "bar_horizontal", "x": "total_seconds", "y": "row"}
    if rule == "report_fig7":
        return {"template": "bar_horizontal", "x": "mean", "y": "label"}
    if rule == "report_fig_sensitivity":
        return {"template": "bar_horizontal", "x": "mean", "y": "model"}
    return {"template": "bar_horizontal", "x": "mean", "y": "row"}


def render(jobs: list[Job], configfile: str = DEFAULT_CONFIG, evaluated: set[str] = frozenset()) -> str:
    """dvc.yaml text for the jobs (deterministic: the same DAG gives the same bytes)."""
    stages = stages_of(jobs, configfile)
    document = {"stages": stages, "plots": plots_of(jobs, set(evaluated))}
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=1000)


def evaluated_runs(configfile: str) -> set[str]:
    """The runs whose evaluations a curve figure reads (the package decides, rules import it)."""
    sys.path.insert(0, str(ROOT / "src"))
    from pruneforget.report.specs import evaluated_runs as runs

    config = yaml.safe_load((ROOT / configfile).read_text())
    return set(runs(config, config["scale"]))


def expected(configfile: str) -> str:
    return render(dag_jobs(configfile), configfile, evaluated_runs(configfile))


def generate(configfile: str) -> int:
    (ROOT / DVC_YAML).write_text(expected(configfile))
    print(f"wrote {DVC_YAML}")
    return 0


def check(configfile: str, path: str = DVC_YAML) -> int:
    """0 when `path` equals what `generate` would write; else print a unified diff and return 1."""
    want = expected(configfile)
    file = ROOT / path
    actual = file.read_text() if file.exists() else ""
    if actual == want:
        print(f"{path} agrees with the Snakemake DAG")
        return 0
    sys.stdout.writelines(difflib.unified_diff(actual.splitlines(True), want.splitlines(True), f"{path} (on disk)", f"{path} (from the DAG)"))
    print(f"\n{path} disagrees with the Snakemake DAG; run: python workflow/scripts/dvc_sync.py generate")
    return 1


# --- Recording a Snakemake run in DVC --------------------------------------------------------


def _same_config(a: str, b: str) -> bool:
    return (ROOT / a).resolve() == (ROOT / b).resolve()


def commit(configfile: str, run_configfile: str | None = None) -> int:
    """`dvc commit` every stage whose job Snakemake considers up to date under `configfile`; list
    what a run with another config (`run_configfile`) made in results/unrecorded.json."""
    if not (ROOT / ".dvc").is_dir() or not (ROOT / DVC_YAML).exists():
        print("dvc_sync commit: no DVC project or dvc.yaml here; nothing to record")
        return 0
    jobs = dag_jobs(configfile)
    # A stage is recorded when every job of its rule is finished and up to date.
    ready = [rule for rule, rule_jobs in _by_rule(jobs).items() if all(j.up_to_date for j in rule_jobs)]
    recorded = {o for rule in ready for j in _by_rule(jobs)[rule] for o in j.outputs}
    if ready:
        print(f"dvc_sync commit: recording {len(ready)} stage(s) in dvc.lock")
        record(ready)
    else:
        print("dvc_sync commit: no finished stage to record")
    other = run_configfile and not _same_config(run_configfile, configfile)
    made = [o for j in dag_jobs(run_configfile) if j.up_to_date for o in j.outputs] if other else []
    _update_unrecorded(recorded, run_configfile if other else None, made, configfile)
    return 0


def record(names: list[str]) -> None:
    """What `dvc commit --force NAME...` does (hash deps and outs, store outs in the cache, write
    dvc.lock), with dvc.lock written once: the command re-reads and rewrites the whole lock file
    for every stage named, 98 s for the micro DAG's 29 stages."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo, repo.lock:
        stages = [stage for stage in repo.index.stages if stage.addressing in set(names)]
        for stage in stages:
            stage.save()
            stage.commit()
        stages[0].dvcfile.dump_stages(stages, update_pipeline=False)


def _update_unrecorded(recorded: set[str], run_configfile: str | None, made: list[str], configfile: str) -> None:
    """Drop outputs DVC has now recorded (or that are gone) from results/unrecorded.json, add those
    a run with another config made, and say so."""
    path = ROOT / UNRECORDED
    entries = json.loads(path.read_text()) if path.exists() else {}
    if run_configfile:
        entries.update({o: run_configfile for o in made if o not in recorded})
    entries = {o: c for o, c in sorted(entries.items()) if o not in recorded and (ROOT / o).exists()}
    if not entries:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1) + "\n")
    if run_configfile:
        print(
            f"dvc_sync commit: this run used {run_configfile}, but dvc.yaml records {configfile}: "
            f"{len(entries)} output(s) made with another config are not recorded in DVC (listed in {UNRECORDED}).\n"
            "  `dvc repro` refuses to run while they exist. Rebuild them with the default config (`snakemake`),\n"
            "  or let DVC replace them: python workflow/scripts/dvc_sync.py allow-overwrite"
        )


def refusal(root: Path = ROOT) -> str | None:
    """Why a DVC stage must not run now (outputs of another config would be overwritten), or None."""
    path = root / UNRECORDED
    if not path.exists():
        return None
    entries = {o: c for o, c in json.loads(path.read_text()).items() if (root / o).exists()}
    if not entries:
        return None
    configs = ", ".join(sorted(set(entries.values())))
    return (
        f"dvc repro refused: results/ holds {len(entries)} output(s) made by `snakemake --configfile {configs}` "
        f"that DVC has not recorded (listed in {UNRECORDED}); dvc.yaml would rebuild them with {DEFAULT_CONFIG}. "
        "Rebuild them with the default config (`snakemake`), or let DVC overwrite them: "
        "python workflow/scripts/dvc_sync.py allow-overwrite"
    )


def allow_overwrite(configfile: str) -> int:
    path = ROOT / UNRECORDED
    if path.exists():
        path.unlink()
        print(f"removed {UNRECORDED}: `dvc repro` may now rebuild those outputs with {configfile}")
    else:
        print(f"nothing to allow: no {UNRECORDED}")
    return 0


def pull(configfile: str) -> int:
    """Fetch outputs from the DVC remote, then restore modification times in DAG order."""
    rc = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=ROOT).returncode
    if rc:
        return rc
    config = [] if configfile == DEFAULT_CONFIG else ["--configfile", configfile]
    # DVC has just written what dvc.lock records: the touch run need not record it again.
    env = {**os.environ, NO_COMMIT: "1"}
    return subprocess.run(["snakemake", "--cores", "1", "--touch", *config], cwd=ROOT, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["generate", "check", "commit", "pull", "allow-overwrite"])
    parser.add_argument("--configfile", default=DEFAULT_CONFIG, help="config the DVC stages record (default: %(default)s)")
    parser.add_argument("--run-configfile", help="for `commit`: the config the Snakemake run used, if not the default")
    parser.add_argument("--dvc-yaml", default=DVC_YAML, help="file to compare, for `check` (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.configfile, args.dvc_yaml)
    if args.command == "commit":
        return commit(args.configfile, args.run_configfile)
    return {"generate": generate, "pull": pull, "allow-overwrite": allow_overwrite}[args.command](args.configfile)


if __name__ == "__main__":
    sys.exit(main())
