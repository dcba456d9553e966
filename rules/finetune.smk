"""Fine-tuning a pruned expert (paper Eq. 8) and its ablations: `ft-{budget}-{loss}-{init}-s{seed}`
with loss kd (distillation) or diff (diffusion loss only) and init pruned (the expert's weights)
or random (fresh weights of the expert's architecture). `ft-80-kd-pruned-s{seed}` is the
paper's "distilled model". A pipeline directory plus metrics.csv, eval.csv, cost.json.
"""


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


rule finetune:
    """Fine-tune expert-{budget} on D_f with the `finetune` section, evaluating every eval_every steps."""
    input:
        expert="results/{scale}/expert-{budget}",
        teacher="results/{scale}/base",
        data="results/{scale}/data",
        evaluator=finetune_evaluator,
    output:
        directory("results/{scale}/ft-{budget}-{loss}-{init}-s{seed}"),
    wildcard_constraints:
        budget=r"\d+(-[a-z]+)?",
        loss="kd|diff",
        init="pruned|random",
        seed=r"\d+",
    params:
        finetune=lambda wc: section("finetune"),
        evaluator=evaluator_flag,
        launch=launcher("finetune"),
    threads: threads_of("finetune")
    resources:
        **resources_of("finetune"),
    log:
        "logs/{scale}/finetune/ft-{budget}-{loss}-{init}-s{seed}.log",
    benchmark:
        "benchmarks/{scale}/finetune/ft-{budget}-{loss}-{init}-s{seed}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.launch} finetune --expert {input.expert} --teacher {input.teacher} --data {input.data} "
        "{params.evaluator} --loss {wildcards.loss} --init {wildcards.init} --seed {wildcards.seed} "
        "--params {params.finetune:q} --out {output} > {log} 2>&1"
