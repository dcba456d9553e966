"""Fine-tuning a pruned expert (paper Eq. 8) and its ablations: `ft-{budget}-{loss}-{init}-s{seed}`
with loss kd (distillation) or diff (diffusion loss only) and init pruned (the expert's weights)
or random (fresh weights of the expert's architecture). `ft-80-kd-pruned-s{seed}` is the
paper's "distilled model". A pipeline directory plus metrics.csv, eval.csv, cost.json.
"""


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
        finetune=lambda wc: section("finetune", wc.scale),
        evaluator_flag=evaluator_flag,
        eval=eval_flag,
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
        "{params.evaluator_flag} {params.eval} --loss {wildcards.loss} --init {wildcards.init} --seed {wildcards.seed} "
        "--params {params.finetune:q} --out {output} > {log} 2>&1"
