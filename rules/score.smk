"""Scoring: small JSON files (metric, version, inputs, values) that tables and figures read."""


rule judge:
    """Score a tiny-world sample set with the ground-truth evaluator (style, shape, colour)."""
    input:
        samples="results/{scale}/samples/{model}/{promptset}",
        evaluator="results/{scale}/evaluator",
    output:
        "results/{scale}/scores/{model}/{promptset}/judge.json",
    threads: threads_of("score")
    resources:
        **resources_of("score"),
    log:
        "logs/{scale}/judge/{model}/{promptset}.log",
    benchmark:
        "benchmarks/{scale}/judge/{model}/{promptset}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget judge --samples {input.samples} --evaluator {input.evaluator} "
        "--out {output} > {log} 2>&1"
