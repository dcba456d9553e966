"""Pruning: experts as pipeline directories results/{scale}/expert-{budget}[-{method}], budget in
percent of the full UNet's MACs (measured at `prune.latent_size` and `prune.text_len`)."""


rule prune_static:
    """Prune the teacher to a MAC budget with a static pruner (magnitude: L1 norm per unit;
    random: seeded), width only, and slice the result into a standalone expert."""
    input:
        base="results/{scale}/base",
    output:
        directory("results/{scale}/expert-{budget}-{method}"),
    wildcard_constraints:
        budget=r"\d+",
        method="magnitude|random",
    params:
        prune=lambda wc: section("prune"),
        budget=lambda wc: int(wc.budget) / 100,
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
        "--budget {params.budget} --params {params.prune:q} --out {output} > {log} 2>&1"
