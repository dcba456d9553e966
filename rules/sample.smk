"""Sampling: one sample set per model and prompt set, with the seeds and scheduler of `sample:`."""


rule sample:
    """Generate images for a prompt set from a model directory: PNGs plus a manifest.
    `val` is the held-out captions (limited to `sample.quality_prompts`, one seed each); the
    downloaded NSFW sets are `prompts/{promptset}.csv`; any other prompt set is
    `data/prompts/{promptset}.csv`, drawn `sample.seeds_per_prompt` times per prompt."""
    input:
        model="results/{scale}/{model}",
        data="results/{scale}/data",
        prompts=prompts_input,
    output:
        directory("results/{scale}/samples/{model}/{promptset}"),
    params:
        sample=lambda wc: section("sample"),
        prompts=prompts_csv,
        limit=sample_limit,
    threads: threads_of("sample")
    resources:
        **resources_of("sample"),
    log:
        "logs/{scale}/sample/{model}/{promptset}.log",
    benchmark:
        "benchmarks/{scale}/sample/{model}/{promptset}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget sample --model {input.model} --prompts {params.prompts} "
        "--params {params.sample:q} --out {output} {params.limit} > {log} 2>&1"
