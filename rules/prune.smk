"""Pruning: APTP's router and codes per MAC budget, and the expert each budget keeps.

Budgets are percent of the full UNet's MACs (80, 55): one APTP run per budget, because a run
centres its experts on its own budget (its resource loss targets the batch's mean ratio).
"""


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
        prune=lambda wc: subsection("prune", "aptp"),
        budget=lambda wc: int(wc.budget) / 100,
    threads: threads_of("prune")
    resources:
        **resources_of("prune"),
    log:
        "logs/{scale}/prune_aptp/{budget}.log",
    benchmark:
        "benchmarks/{scale}/prune_aptp/{budget}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget prune-aptp --base {input.base} --data {input.data} --budget {params.budget} "
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
        prune=lambda wc: subsection("prune", "aptp"),
        target=lambda wc: int(wc.budget) / 100,
        tolerance=lambda wc: config["prune"]["aptp"]["tolerance"],
    # Loading, slicing and saving a pipeline: the base group's job size (as fetch_base).
    resources:
        **resources_of("base"),
    log:
        "logs/{scale}/extract_expert/{budget}.log",
    benchmark:
        "benchmarks/{scale}/extract_expert/{budget}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget extract-expert --aptp {input.aptp} --base {input.base} --target {params.target} "
        "--tolerance {params.tolerance} --out {output} > {log} 2>&1"
