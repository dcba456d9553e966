"""Helpers shared by the rules: paths, config sections as `--params` JSON, resources, environment.

Only path and parameter plumbing lives here; what a step does lives in the CLI command it calls.
"""

import json
import os
import shlex

from pruneforget.prune import NEEDS_DATA as PRUNERS_NEEDING_DATA
from pruneforget.unlearn.stages import PREVIOUS as STAGE_PREVIOUS, base_setting, stage_section
from pruneforget.variants import SHARED_ARTIFACTS, scale_config, scales, shares_images, variant_scale, variants

SCALE = config["scale"]
# Every scale this run can build: the configured one, then one per generalisation variant
# (results/{scale}-{variant}/, pruneforget/variants.py). A job reads the config of its own scale.
SCALES = scales(config)
# Each scale's config, merged once (jobs' params read it, thousands of times in a DAG).
SCALE_CONFIGS = {scale: scale_config(config, scale) for scale in SCALES}

# tiny runs on CPU anywhere; the paper scale runs on CUDA nodes (envs/ holds both).
CONDA_ENV = "../envs/cpu.yaml" if SCALE == "tiny" else "../envs/cuda.yaml"


def section(name, scale=SCALE):
    """Config section `name` of `scale` (a variant's scale reads its overlaid config) as JSON for a
    command's `--params` (rules pass config on, code never re-reads the file). Each rule's params
    key is the section name: workflow/scripts/dvc_sync.py reads it to declare the section as the
    DVC stage's params."""
    return json.dumps(SCALE_CONFIGS[scale][name], sort_keys=True)


def variant_of(scale):
    """The generalisation variant a scale builds (None at the configured scale)."""
    return next((name for name in variants(config) if variant_scale(config, name) == scale), None)


# Variants that keep the world's training images reuse its teacher, VAE and evaluator (copied by
# share_base_world): those see every style, and only D_f depends on the removed styles.
SHARING_SCALES = [variant_scale(config, n) for n in variants(config) if shares_images(config, n)]


def bilevel_section():
    """The `bilevel` section a run reads: without `sweep`, which names other runs, so widening the
    sweep does not rerun the runs already made."""
    return json.dumps({k: v for k, v in config["bilevel"].items() if k != "sweep"}, sort_keys=True)


def sweep_runs():
    """The sensitivity sweep's run directories at the config's seed, the centre (the main run) left out."""
    bilevel = config.get("bilevel")
    if not bilevel:
        return []
    grid = sweep_grid(config)
    # The stem is rule bilevel's output pattern (bilevel/runs.py), formatted as the figure formats its rows.
    return [f"results/{SCALE}/{sweep_stem('bilevel-lam{lam}-K{K}', lam, k)}-s{config['seed']}"
            for _, lam, k in sweep_settings(grid["lambdas"], grid["Ks"], grid["default"])
            if (lam, k) != (grid["default"]["lam"], grid["default"]["K"])]


def unlearn_section(setting, *method_sections, scale=SCALE):
    """The parts of `scale`'s `unlearn` section one job reads (the setting's concepts and its
    methods' parameters), so editing another method's parameters does not rerun it. A continual
    stage (unlearn/stages.py) reads the artist setting with the stage's concepts, under its base name."""
    unlearn = SCALE_CONFIGS[scale]["unlearn"]
    keep = {base_setting(setting): stage_section(unlearn, setting)}
    keep.update({k: unlearn[k] for k in method_sections})
    return json.dumps(keep, sort_keys=True)


def bilevel_unlearn_section(run, scale=SCALE):
    """The `unlearn` parts a bilevel run reads: the setting's concepts, unlearn.esd (the upper
    level's target mode, sampling, anchor) and unlearn.uce when its upper method is UCE's edit."""
    bilevel = config["bilevel"]
    method = run.upper or (bilevel.get("code", {}).get("upper", {}).get("method") if run.variant == "code" else None)
    method = method or bilevel["upper"]["method"]
    return unlearn_section(run.setting, "esd", *(["uce"] if method == "uce" else []), scale=scale)


def added_concepts(run, scale=SCALE):
    """`--add-concept` flags of a continual `later` run: the stage's concepts (unlearn/stages.py)."""
    if run.setting not in STAGE_PREVIOUS:
        return ""
    added = stage_section(SCALE_CONFIGS[scale]["unlearn"], run.setting)["concepts"]
    return " ".join(f"--add-concept {shlex.quote(c)}" for c in added)


def static_pruner_data(wildcards):
    """The data directory for the static pruners that measure importance on D_f, nothing for the others."""
    return f"results/{wildcards.scale}/data" if wildcards.method in PRUNERS_NEEDING_DATA else []


def resources_of(group):
    """SLURM resources (gpu, mem_mb, runtime, ...) of a group of rules, from the config's resources section.
    A group a scale never runs may be absent (the schema requires the ones its DAG needs).
    Every job runs on one node (nodes=1): a multi-GPU job's GPUs must share the node its
    accelerate launcher runs on."""
    group_resources = {k: v for k, v in config["resources"].get(group, {}).items() if k != "threads"}
    return {"nodes": 1, **group_resources}


def threads_of(group):
    """CPU threads of a group's jobs. Snakemake exports them as OMP_NUM_THREADS (torch's intra-op
    threads) and caps them at --cores, so two heavy jobs never share two cores."""
    return config["resources"].get(group, {}).get("threads", 1)


def data_dir():
    return f"results/{SCALE}/data"


def downloaded_prompt_sets():
    """Names of the prompt sets this scale downloads (I2P, MMA-Diffusion, Ring-A-Bell at sd21)."""
    return list(config.get("prompt_sets", {}).get("sets", []))


def prompts_path(scale, promptset):
    """The prompt table of a prompt set: held-out captions for `val`, a downloaded NSFW set
    (results/{scale}/prompts/), else a set the data step derived (data/prompts/)."""
    if promptset == "val":
        return f"results/{scale}/data/val.csv"
    if promptset in downloaded_prompt_sets():
        return f"results/{scale}/prompts/{promptset}.csv"
    return f"results/{scale}/data/prompts/{promptset}.csv"


def prompts_csv(wildcards):
    return prompts_path(wildcards.scale, wildcards.promptset)


def prompts_input(wildcards):
    """A downloaded prompt set is its own job's output (an input of sampling); the others live
    inside the data directory, which is the input already."""
    return [prompts_csv(wildcards)] if wildcards.promptset in downloaded_prompt_sets() else []


def set_limit(promptset):
    """`--limit N --seeds-per-prompt 1` for the teacher-quality sampling of `val` (a subset of the
    held-out captions, one image each); other sets take sample.eval_prompts prompts,
    sample.seeds_per_prompt times each."""
    if promptset == "val":
        return f"--limit {config['sample']['quality_prompts']} --seeds-per-prompt 1"
    if config["sample"].get("eval_prompts"):
        return f"--limit {config['sample']['eval_prompts']}"
    return ""


def sample_limit(wildcards):
    """The set's --limit, and the prompts a grid figure shows from it (kept in any subset)."""
    return limit_flags(wildcards.scale, [wildcards.promptset])


def limit_flags(scale, promptsets):
    """--limit of the sets (one limit serves a bundle: see bundle_sets_flags) and --keep-prompt for
    every prompt a grid figure of the scale shows from any of them (the command keeps each in its
    own set)."""
    prompts = dict.fromkeys(p for name in promptsets for p in grid_prompts(SCALE_CONFIGS[scale], name))
    keep = " ".join(f"--keep-prompt {shlex.quote(p)}" for p in prompts)
    limit = set_limit(promptsets[0])
    return f"{limit} {keep}" if limit and keep else limit


def bundle_sets_flags(wildcards, output):
    """`--prompts CSV --out DIR` for every set of the bundle, in the order of its outputs (each
    output is results/{scale}/samples/{model}/{set}; the config check keeps `val` and downloaded
    sets out of a bundle, so one --limit serves all)."""
    return " ".join(f"--prompts {prompts_path(wildcards.scale, os.path.basename(out))} --out {out}"
                    for out in output)


def paper_figure_targets():
    """The PDFs of every table and figure the config's `figures:` section defines (FIGURES: the
    figure rules of rules/figures.smk)."""
    return [f"figures/{name}.pdf" for name in FIGURES if name in config.get("figures", {})]


def final_targets():
    """The default target (the `all` rule) at every scale: every table and figure, and in the tiny
    world also the teacher-quality figure (it needs the world's ground-truth evaluator)."""
    teacher = ["figures/teacher_quality.pdf"] if config["world"]["kind"] == "tiny" else []
    return paper_figure_targets() + teacher


# --- Figures: each table/figure's inputs and spec come from the config's `figures:` section ----
# The same resolved spec (report.specs) gives the rule its inputs and the command its --params,
# so a figure draws exactly the models, seeds and prompt sets its DAG built.
from pruneforget.report.specs import (
    evaluated_runs,
    figure_config_keys,
    figure_inputs,
    grid_prompts,
    resolve_figure,
    sample_bundle,
    sweep_grid,
    sweep_settings,
    sweep_stem,
)

# Prompt sets sampled together per model (rule sample_bundle); the others one job each. A variant
# removes other styles, so its bundle names other sets: one bundle per scale.
SAMPLE_BUNDLE = sample_bundle(config)
SAMPLE_BUNDLES = {scale: sample_bundle(SCALE_CONFIGS[scale]) for scale in SCALES}


def bundle_rule_name(rule_name, scale):
    """The name of `scale`'s bundle rules: `rule_name` itself at the configured scale (its jobs and
    DVC stages stay as they were), `{rule_name}_{variant}` at a variant's."""
    return rule_name if scale == SCALE else f"{rule_name}_{variant_of(scale)}"

# Training runs a curve figure plots evaluate every eval_every steps; the others train without
# evaluating (`--no-eval`): no figure would read it.
EVALUATED_RUNS = evaluated_runs(config, SCALE)


def eval_flag(wildcards, output):
    return "" if output[0] in EVALUATED_RUNS else "--no-eval"


def figure_input(name):
    """Input function of figure `name`: {scores, runs, samples} path lists (unpack it)."""
    return lambda wildcards: figure_inputs(resolve_figure(config, name), SCALE)


def figure_params(name):
    """Figure `name`'s resolved spec as JSON for `report --params` (its key in params must be
    `figures`, the config section it comes from)."""
    return lambda wildcards: json.dumps(resolve_figure(config, name), sort_keys=True)
def finetune_evaluator(wildcards):
    """What judges a training run's periodic evaluation: the tiny world's ground-truth evaluator,
    or at sd21 the COCO FID statistics (rule fid_reference_stats) its FID is taken against."""
    if config["world"]["kind"] == "tiny":
        return f"results/{wildcards.scale}/evaluator"
    return f"results/{wildcards.scale}/fid_reference"


def evaluator_flag(wildcards):
    flag = "--evaluator" if config["world"]["kind"] == "tiny" else "--fid-reference"
    return f"{flag} {finetune_evaluator(wildcards)}"


def launcher(group):
    """`python -m pruneforget`, or accelerate's launcher with one process per GPU of the group's
    resources (DDP; the effective batch stays the config's)."""
    gpus = config["resources"].get(group, {}).get("gpu", 0)
    if gpus > 1:
        # The job's CPU threads (Snakemake's OMP_NUM_THREADS) shared among its ranks: each rank
        # would otherwise take them all, and the ranks would fight over the job's cores.
        split = f"OMP_NUM_THREADS=$(( OMP_NUM_THREADS > {gpus} ? OMP_NUM_THREADS / {gpus} : 1 ))"
        # Port 0: a free port per job. Two jobs on one node (the smoke's, or two 4-GPU jobs) would
        # otherwise both take accelerate's default 29500, and the second fails.
        return f"{split} accelerate launch --multi_gpu --num_processes {gpus} --main_process_port 0 -m pruneforget"
    return "python -m pruneforget"


# --- scoring (rules/score.smk) ---

SCORE = config.get("score", {})
# Metrics of rule `score`.
SCORE_RULE_METRICS = list(SCORE.get("metrics", []))
# Which inputs each metric reads, from the package (the command checks the same table).
from pruneforget.metrics.inputs import NEEDS as METRIC_NEEDS, PAIRED as PAIRED_METRICS


def score_inputs(wildcards):
    """Named inputs of one score (the names are the command's flags): the metric's NEEDS, each
    input's path from the run's wildcards."""
    root, metric = f"results/{wildcards.scale}", wildcards.metric
    reference = (f"{root}/samples/{SCORE['reference_model']}/{wildcards.promptset}" if metric in PAIRED_METRICS
                 else f"{root}/fid_reference")
    paths = {  # in the order of the command's flags in every score job so far (a new order reruns them)
        "samples": f"{root}/samples/{wildcards.model}/{wildcards.promptset}",
        "evaluator": f"{root}/evaluator",
        "reference": reference,
        "model": f"{root}/{wildcards.model}",  # a model's own number (denoising error): promptset is val
        "data": f"{root}/data",
    }
    return {name: path for name, path in paths.items() if name in METRIC_NEEDS[metric]}


def score_flags(wildcards, input):
    """`--samples DIR --evaluator DIR ...`: a score's inputs as the command's flags."""
    return " ".join(f"--{name} {input[name]}" for name in input.keys())
