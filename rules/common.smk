"""Helpers shared by the rules: paths, config sections as `--params` JSON, resources, environment.

Only path and parameter plumbing lives here; what a step does lives in the CLI command it calls.
"""

import json

SCALE = config["scale"]

# tiny runs on CPU anywhere; the paper scale runs on CUDA nodes (envs/ holds both).
CONDA_ENV = "../envs/cpu.yaml" if SCALE == "tiny" else "../envs/cuda.yaml"


def section(name):
    """Config section `name` as JSON for a command's `--params` (rules pass config on, code never
    re-reads the file). Each rule's params key is the section name: workflow/scripts/dvc_sync.py
    reads it to declare the section as the DVC stage's params."""
    return json.dumps(config[name], sort_keys=True)


def resources_of(group):
    """SLURM resources (gpu, mem_mb, runtime, ...) of a group of rules, from the config's resources section.
    A group a scale never runs may be absent (the schema requires the ones its DAG needs)."""
    return {k: v for k, v in config["resources"].get(group, {}).items() if k != "threads"}


def threads_of(group):
    """CPU threads of a group's jobs. Snakemake exports them as OMP_NUM_THREADS (torch's intra-op
    threads) and caps them at --cores, so two heavy jobs never share two cores."""
    return config["resources"].get(group, {}).get("threads", 1)


def data_dir():
    return f"results/{SCALE}/data"


def prompts_csv(wildcards):
    """The prompt table of a prompt set: held-out captions for `val`, else a shipped/derived set."""
    if wildcards.promptset == "val":
        return f"results/{wildcards.scale}/data/val.csv"
    return f"results/{wildcards.scale}/data/prompts/{wildcards.promptset}.csv"


def sample_limit(wildcards):
    """`--limit N` for the teacher-quality sampling of `val` (a subset of the held-out captions)."""
    if wildcards.promptset == "val":
        return f"--limit {config['sample']['quality_prompts']}"
    return ""


def final_targets():
    """Final targets for this scale. The tiny world ends in the teacher-quality figure
    (which needs its ground-truth evaluator); the paper scale, so far, in its data and base model."""
    if config["world"]["kind"] == "tiny":
        return ["figures/teacher_quality.pdf", f"results/{SCALE}/evaluator"]
    return [data_dir(), f"results/{SCALE}/base"]


def finetune_evaluator(wildcards):
    """The tiny world judges fine-tuning with its ground-truth evaluator; sd21 uses FID instead."""
    return f"results/{wildcards.scale}/evaluator" if config["world"]["kind"] == "tiny" else []


def evaluator_flag(wildcards):
    evaluator = finetune_evaluator(wildcards)
    return f"--evaluator {evaluator}" if evaluator else ""


def launcher(group):
    """`python -m pruneforget`, or accelerate's launcher with one process per GPU of the group's
    resources (DDP; the effective batch stays the config's)."""
    gpus = config["resources"].get(group, {}).get("gpu", 0)
    if gpus > 1:
        return f"accelerate launch --multi_gpu --num_processes {gpus} -m pruneforget"
    return "python -m pruneforget"
