"""Two-stage unlearning: remove a setting's concepts from the distilled model with one method.

`results/{scale}/{method}-{setting}-s{seed}` is a pipeline directory plus `unlearn.json`, made
from the distilled model `ft-80-kd-pruned-s{seed}` of the same seed. A method is one entry of
`pruneforget.unlearn.METHODS` (method -> module, named as the `unlearn` subsection it reads).
"""

from pruneforget.unlearn import METHODS as UNLEARN_SECTIONS


rule unlearn:
    """Remove the concepts of `unlearn.{setting}` (artists or global) with `{method}`."""
    input:
        model="results/{scale}/ft-80-kd-pruned-s{seed}",
        data="results/{scale}/data",
    output:
        directory("results/{scale}/{method}-{setting}-s{seed}"),
    wildcard_constraints:
        method="|".join(UNLEARN_SECTIONS),
        setting="artists|global",
        seed=r"\d+",
    params:
        unlearn=lambda wc: unlearn_section(wc.setting, UNLEARN_SECTIONS[wc.method]),
    threads: threads_of("unlearn")
    resources:
        **resources_of("unlearn"),
    log:
        "logs/{scale}/unlearn/{method}-{setting}-s{seed}.log",
    benchmark:
        "benchmarks/{scale}/unlearn/{method}-{setting}-s{seed}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget unlearn --method {wildcards.method} --setting {wildcards.setting} "
        "--model {input.model} --data {input.data} --seed {wildcards.seed} "
        "--params {params.unlearn:q} --out {output} > {log} 2>&1"
