"""Scoring: small JSON files (metric, version, inputs, values) that tables and figures read.

    results/{scale}/scores/{model}/{promptset}/{metric}.json

`score.metrics` says which metrics a scale measures; each goes through rule `score` (the judge
scores of a model's sample bundle through rule `score_bundle`, in one job). Which inputs a metric reads is
`pruneforget.metrics.inputs.NEEDS` (the command checks the same table); the paths are made here.
At the paper scale two rules make the inputs the scores need: the COCO val2017 FID statistics
(once) and the downloaded NSFW prompt sets. Their path helpers (score_inputs, ...) live in
rules/common.smk.
"""

if SCORE_RULE_METRICS:

    rule score:
        """One metric of one sample set (or, for denoising_error, of a model)."""
        input:
            unpack(score_inputs),
        output:
            "results/{scale}/scores/{model}/{promptset}/{metric}.json",
        wildcard_constraints:
            metric="|".join(SCORE_RULE_METRICS),
        params:
            score=lambda wc: section("score", wc.scale),
            flags=score_flags,
        threads: threads_of("score")
        resources:
            **resources_of("score"),
        log:
            "logs/{scale}/score/{model}/{promptset}/{metric}.log",
        benchmark:
            "benchmarks/{scale}/score/{model}/{promptset}/{metric}.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget score --metric {wildcards.metric} {params.flags} "
            "--params {params.score:q} --out {output} > {log} 2>&1"


# One rule per scale, as rule sample_bundle (rules/sample.smk).
for bundle_scale, bundle in SAMPLE_BUNDLES.items():
    if not (bundle and "judge" in SCORE_RULE_METRICS):
        continue

    rule:
        """Judge every set of `sample.bundle` of one model in one job (rule sample_bundle made
        them together; a job's start-up is most of judging one set): `score --metric judge` with
        one --samples / --out pair per set."""
        name:
            bundle_rule_name("score_bundle", bundle_scale)
        input:
            samples=[f"results/{{scale}}/samples/{{model}}/{name}" for name in bundle],
            evaluator="results/{scale}/evaluator",
        output:
            [f"results/{{scale}}/scores/{{model}}/{name}/judge.json" for name in bundle],
        wildcard_constraints:
            scale=re.escape(bundle_scale),
        params:
            score=lambda wc: section("score", wc.scale),
            pairs=lambda wc, input, output: " ".join(f"--samples {s} --out {o}" for s, o in zip(input.samples, output)),
        threads: threads_of("score")
        resources:
            **resources_of("score"),
        log:
            "logs/{scale}/score_bundle/{model}.log",
        benchmark:
            "benchmarks/{scale}/score_bundle/{model}.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget score --metric judge {params.pairs} --evaluator {input.evaluator} "
            "--params {params.score:q} > {log} 2>&1"

    workflow.ruleorder(bundle_rule_name("score_bundle", bundle_scale), "score")


if "fid" in SCORE.get("metrics", []):

    rule fid_reference_stats:
        """clean-fid statistics of the COCO val2017 images (center-cropped, resized to
        score.fid_reference_size), computed once for every FID score."""
        input:
            data="results/{scale}/data",
        output:
            directory("results/{scale}/fid_reference"),
        params:
            score=lambda wc: section("score", wc.scale),
        threads: threads_of("score")
        resources:
            **resources_of("score"),
        log:
            "logs/{scale}/fid_reference_stats.log",
        benchmark:
            "benchmarks/{scale}/fid_reference_stats.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget fid-reference --data {input.data} --params {params.score:q} "
            "--out {output} > {log} 2>&1"


if downloaded_prompt_sets():

    rule fetch_prompt_set:
        """Download one NSFW prompt set, check it against its pins and the lock file
        (prompt_sets.lock; the first download records it), normalise its columns."""
        output:
            "results/{scale}/prompts/{name}.csv",
        wildcard_constraints:
            name="|".join(downloaded_prompt_sets()),
        params:
            prompt_sets=lambda wc: section("prompt_sets", wc.scale),
        resources:
            **resources_of("data"),
        log:
            "logs/{scale}/fetch_prompt_set/{name}.log",
        benchmark:
            "benchmarks/{scale}/fetch_prompt_set/{name}.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget fetch-prompts --name {wildcards.name} --params {params.prompt_sets:q} "
            "--out {output} > {log} 2>&1"
