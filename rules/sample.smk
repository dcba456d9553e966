"""Sampling: one sample set per model and prompt set, with the seeds and scheduler of `sample:`.

A set listed in `sample.bundle` is sampled by `sample_bundle` together with the bundle's other
sets for the same model: one job loads the model once (tiny: seven sets of 96 images, where a
job's start-up cost as much as its sampling). The same command, the same outputs: only the
number of jobs differs. At the paper scale the bundle holds the three artist sets (150 prompts, one
GPU job per model instead of three); COCO val and the NSFW sets are GPU jobs of their own.
"""


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
        sample=lambda wc: section("sample", wc.scale),
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


# One bundle rule per scale: a generalisation variant removes other styles, so its bundle names
# other prompt sets (SAMPLE_BUNDLES); the configured scale's rule keeps its name, sample_bundle.
for bundle_scale, bundle in SAMPLE_BUNDLES.items():
    if not bundle:
        continue

    rule:
        """Every prompt set of `sample.bundle` for one model, in one job (see the module docstring)."""
        name:
            bundle_rule_name("sample_bundle", bundle_scale)
        input:
            model="results/{scale}/{model}",
            data="results/{scale}/data",
        output:
            [directory(f"results/{{scale}}/samples/{{model}}/{name}") for name in bundle],
        wildcard_constraints:
            scale=re.escape(bundle_scale),
        params:
            sample=lambda wc: section("sample", wc.scale),
            sets=bundle_sets_flags,
            limit=limit_flags(bundle_scale, bundle),
        threads: threads_of("sample")
        resources:
            **resources_of("sample"),
        log:
            "logs/{scale}/sample_bundle/{model}.log",
        benchmark:
            "benchmarks/{scale}/sample_bundle/{model}.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget sample --model {input.model} {params.sets} "
            "--params {params.sample:q} {params.limit} > {log} 2>&1"

    workflow.ruleorder(bundle_rule_name("sample_bundle", bundle_scale), "sample")
