"""The base (teacher) model: trained from scratch in the tiny world, or fetched (SD 2.1).

Both write `results/{scale}/base`; `base.pretrained` decides which rule exists, so the DAG (and
DVC's copy of it) holds exactly one way to make the teacher.
"""


rule train_vae:
    """Train the tiny world's AutoencoderKL on world images (tiny only)."""
    input:
        data="results/{scale}/data",
    output:
        directory("results/{scale}/vae"),
    params:
        base=lambda wc: section("base", wc.scale),
    threads: threads_of("vae")
    resources:
        **resources_of("vae"),
    log:
        "logs/{scale}/train_vae.log",
    benchmark:
        "benchmarks/{scale}/train_vae.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget train-vae --data {input.data} --params {params.base:q} "
        "--out {output} > {log} 2>&1"


if config["base"]["pretrained"] is None:

    rule train_base:
        """Train the tiny Stable-Diffusion-shaped teacher (UNet on the VAE's latents)."""
        input:
            data="results/{scale}/data",
            vae="results/{scale}/vae",
        output:
            directory("results/{scale}/base"),
        params:
            base=lambda wc: section("base", wc.scale),
        threads: threads_of("base")
        resources:
            **resources_of("base"),
        log:
            "logs/{scale}/train_base.log",
        benchmark:
            "benchmarks/{scale}/train_base.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget train-base --data {input.data} --vae {input.vae} "
            "--params {params.base:q} --out {output} > {log} 2>&1"

else:

    rule fetch_base:
        """Copy the pretrained pipeline (hub id or local directory) into the workflow."""
        output:
            directory("results/{scale}/base"),
        params:
            base=lambda wc: section("base", wc.scale),
        resources:
            **resources_of("base"),
        log:
            "logs/{scale}/fetch_base.log",
        benchmark:
            "benchmarks/{scale}/fetch_base.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget fetch-base --params {params.base:q} --out {output} > {log} 2>&1"


if SHARING_SCALES:

    rule share_base_world:
        """A generalisation variant that keeps the world's training images (it removes other
        styles: pruneforget/variants.py) reuses the configured scale's teacher, VAE and evaluator,
        which are trained on every style: a copy, not a retraining."""
        input:
            f"results/{SCALE}/{{artifact}}",
        output:
            directory("results/{scale}/{artifact}"),
        wildcard_constraints:
            scale="|".join(re.escape(s) for s in SHARING_SCALES),
            artifact="|".join(SHARED_ARTIFACTS),
        localrule: True
        log:
            "logs/{scale}/share_base_world/{artifact}.log",
        conda:
            CONDA_ENV
        shell:
            "cp -r {input} {output} > {log} 2>&1"

    ruleorder: share_base_world > train_vae
    ruleorder: share_base_world > train_evaluator
    ruleorder: share_base_world > train_base
