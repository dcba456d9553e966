"""Pruning: experts as pipeline directories results/{scale}/expert-{budget}[-{method}], budget in
percent of the full UNet's MACs (measured at `prune.latent_size` and `prune.text_len`).

APTP runs once per budget (results/{scale}/aptp-{budget}): a run centres its experts on its own
budget (its resource loss targets the batch's mean ratio), and its code nearest the budget is
sliced out as results/{scale}/expert-{budget}.

Static pruners (`pruneforget.prune.METHODS`) write results/{scale}/expert-{budget}-{method}
(e.g. expert-80-magnitude, expert-55-taylor); those of `NEEDS_DATA` read the data directory."""

from pruneforget.prune import METHODS as STATIC_PRUNERS


rule prune_static:
    """Prune the teacher to a MAC budget with a static pruner (magnitude: L1 norm per unit;
    random: seeded; taylor: first-order Taylor importance on D_f; blocks: block removal by
    measured output change, then magnitude width) and slice the result into a standalone expert."""
    input:
        base="results/{scale}/base",
        data=static_pruner_data,
    output:
        directory("results/{scale}/expert-{budget}-{method}"),
    wildcard_constraints:
        budget=r"\d+",
        method="|".join(STATIC_PRUNERS),
    params:
        prune=lambda wc: section("prune", wc.scale),
        budget=lambda wc: int(wc.budget) / 100,
        data_flag=lambda wc, input: f"--data {input.data}" if input.data else "",
    threads: threads_of("prune")
    resources:
        **resources_of("prune"),
    log:
        "logs/{scale}/prune_static/expert-{budget}-{method}.log",
    benchmark:
        "benchmarks/{scale}/prune_static/expert-{budget}-{method}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget prune-static --base {input.base} --method {wildcards.method} "
        "--budget {params.budget} {params.data_flag} --params {params.prune:q} --out {output} > {log} 2>&1"


rule prune_aptp:
    """APTP: learn the prompt router and its architecture codes on the frozen teacher for a budget."""
    input:
        base="results/{scale}/base",
        data="results/{scale}/data",
    output:
        directory("results/{scale}/aptp-{budget}"),
    wildcard_constraints:
        budget=r"\d+",
    params:
        prune=lambda wc: section("prune", wc.scale),
        budget=lambda wc: int(wc.budget) / 100,
        launch=launcher("aptp"),
    threads: threads_of("aptp")
    resources:
        **resources_of("aptp"),
    log:
        "logs/{scale}/prune_aptp/{budget}.log",
    benchmark:
        "benchmarks/{scale}/prune_aptp/{budget}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.launch} prune-aptp --base {input.base} --data {input.data} --budget {params.budget} "
        "--params {params.prune:q} --out {output} > {log} 2>&1"


rule extract_expert:
    """Slice the APTP code nearest the budget out of the teacher: a standalone expert pipeline."""
    input:
        aptp="results/{scale}/aptp-{budget}",
        base="results/{scale}/base",
    output:
        directory("results/{scale}/expert-{budget}"),
    wildcard_constraints:
        budget=r"\d+",
    params:
        prune=lambda wc: section("prune", wc.scale),
        target=lambda wc: int(wc.budget) / 100,
        tolerance=lambda wc: config["prune"]["budget_tolerance"],
    # Loading, slicing and saving a pipeline: the job size of prune_static.
    resources:
        **resources_of("prune"),
    log:
        "logs/{scale}/extract_expert/{budget}.log",
    benchmark:
        "benchmarks/{scale}/extract_expert/{budget}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget extract-expert --aptp {input.aptp} --base {input.base} --target {params.target} "
        "--tolerance {params.tolerance} --out {output} > {log} 2>&1"
