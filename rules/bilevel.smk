"""The bilevel method (paper Algorithm 1): fine-tune expert-80 and remove a setting's concepts in
one run. `bilevel-{setting}-s{seed}` is the paper's method, `bilevelsep-{setting}-s{seed}` the same
with vartheta a second copy (separate mode: the run whose penalty trace figures.fig_penalty draws),
`bilevelcode-{setting}-s{seed}` what the authors' code does (`bilevel.code`), and
`bilevel-lam{lam}-K{K}-s{seed}` the lambda x K sweep on the artist setting (tiny; `bilevel.sweep`).
Each is a pipeline directory plus metrics.csv, eval.csv, cost.json and run_config.json.
(Two-stage ESD runs through rules/unlearn.smk: esdx, esdu, esd.)
"""

# run kind -> the command's --variant
BILEVEL_VARIANTS = {"bilevel": "paper", "bilevelsep": "separate", "bilevelcode": "code"}


rule bilevel:
    """Algorithm 1 (kinds bilevel, bilevelsep) or the authors' code (kind bilevelcode) on expert-80."""
    input:
        expert="results/{scale}/expert-80",
        teacher="results/{scale}/base",
        data="results/{scale}/data",
        evaluator=finetune_evaluator,
    output:
        directory("results/{scale}/{kind}-{setting}-s{seed}"),
    wildcard_constraints:
        kind="|".join(BILEVEL_VARIANTS),
        setting="artists|global",
        seed=r"\d+",
    params:
        bilevel=lambda wc: bilevel_section(),
        finetune=lambda wc: section("finetune"),
        unlearn=lambda wc: unlearn_section(wc.setting, "esd"),
        variant=lambda wc: BILEVEL_VARIANTS[wc.kind],
        evaluator_flag=evaluator_flag,
        eval=eval_flag,
        launch=launcher("bilevel"),
    threads: threads_of("bilevel")
    resources:
        **resources_of("bilevel"),
    log:
        "logs/{scale}/bilevel/{kind}-{setting}-s{seed}.log",
    benchmark:
        "benchmarks/{scale}/bilevel/{kind}-{setting}-s{seed}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.launch} bilevel --expert {input.expert} --teacher {input.teacher} --data {input.data} "
        "{params.evaluator_flag} {params.eval} --setting {wildcards.setting} --variant {params.variant} --seed {wildcards.seed} "
        "--params {params.bilevel:q} --finetune {params.finetune:q} --unlearn {params.unlearn:q} "
        "--out {output} > {log} 2>&1"


rule bilevel_sweep_run:
    """One point of the lambda x K sweep: Algorithm 1 on the artist setting with lambda and K set."""
    input:
        expert="results/{scale}/expert-80",
        teacher="results/{scale}/base",
        data="results/{scale}/data",
        evaluator=finetune_evaluator,
    output:
        directory("results/{scale}/bilevel-lam{lam}-K{k}-s{seed}"),
    wildcard_constraints:
        lam=r"\d+(\.\d+)?",
        k=r"\d+",
        seed=r"\d+",
    params:
        bilevel=lambda wc: bilevel_section(),
        finetune=lambda wc: section("finetune"),
        unlearn=lambda wc: unlearn_section("artists", "esd"),
        evaluator_flag=evaluator_flag,
        eval=eval_flag,
        launch=launcher("bilevel"),
    threads: threads_of("bilevel")
    resources:
        **resources_of("bilevel"),
    log:
        "logs/{scale}/bilevel/bilevel-lam{lam}-K{k}-s{seed}.log",
    benchmark:
        "benchmarks/{scale}/bilevel/bilevel-lam{lam}-K{k}-s{seed}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.launch} bilevel --expert {input.expert} --teacher {input.teacher} --data {input.data} "
        "{params.evaluator_flag} {params.eval} --setting artists --lam {wildcards.lam} --k {wildcards.k} --seed {wildcards.seed} "
        "--params {params.bilevel:q} --finetune {params.finetune:q} --unlearn {params.unlearn:q} "
        "--out {output} > {log} 2>&1"


rule bilevel_sweep:
    """Every run of the sensitivity sweep (`bilevel.sweep`, one at a time around bilevel.lam and
    bilevel.k; the centre is bilevel-artists) for the config's seed: `snakemake bilevel_sweep`."""
    input:
        sweep_runs(),
