"""Data: the tiny world or the MS-COCO tables, and the tiny world's ground-truth evaluator."""


rule prepare_data:
    """Build the world (tiny) or the COCO caption tables (sd21): train.csv, finetune.csv, val.csv,
    images/, prompts/*.csv and world.json."""
    output:
        directory("results/{scale}/data"),
    params:
        world=lambda wc: section("world", wc.scale),
    resources:
        **resources_of("data"),
    log:
        "logs/{scale}/prepare_data.log",
    benchmark:
        "benchmarks/{scale}/prepare_data.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget prepare-data --params {params.world:q} --out {output} > {log} 2>&1"


rule train_evaluator:
    """Train the tiny world's ground-truth style/shape/colour classifier (tiny only)."""
    input:
        data="results/{scale}/data",
    output:
        directory("results/{scale}/evaluator"),
    params:
        evaluator=lambda wc: section("evaluator", wc.scale),
    threads: threads_of("evaluator")
    resources:
        **resources_of("evaluator"),
    log:
        "logs/{scale}/train_evaluator.log",
    benchmark:
        "benchmarks/{scale}/train_evaluator.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget train-evaluator --data {input.data} --params {params.evaluator:q} "
        "--out {output} > {log} 2>&1"
