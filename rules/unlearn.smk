"""Two-stage unlearning: remove a setting's concepts from the distilled model with one method.

`results/{scale}/{run}` with run `{method}-{setting}[-{pruner}][-{knob}{value}]-s{seed}` (unlearn/runs.py) is a
pipeline directory plus `unlearn.json`, made from the distilled model of the same seed
(`ft-80[-{pruner}]-kd-pruned-s{seed}`), or for the continual stage `later` from the `first` run of
the same method. A method is one entry of `pruneforget.unlearn.METHODS` (method -> module, named
as the `unlearn` subsection it reads). A knob (unlearn/knobs.py: `esdx-artists-steps200-s0`)
reaches the command as `--knob NAME=VALUE`, which overrides that one value of the section it reads.
"""

from pruneforget.unlearn import METHODS as UNLEARN_SECTIONS
from pruneforget.unlearn.runs import NAME_PATTERN as UNLEARN_RUN, parse_run as parse_unlearn_run


rule unlearn:
    """Remove the concepts of `unlearn.{setting}` (artists or global; a continual stage: its share
    of the artists) with `{method}`; the run's name gives method, setting, pruner, strength knob
    and seed."""
    input:
        model=lambda wc: f"results/{wc.scale}/{parse_unlearn_run(wc.run).source()}",
        data="results/{scale}/data",
    output:
        directory("results/{scale}/{run}"),
    wildcard_constraints:
        run=UNLEARN_RUN,
    params:
        unlearn=lambda wc: unlearn_section(parse_unlearn_run(wc.run).setting,
                                           UNLEARN_SECTIONS[parse_unlearn_run(wc.run).method], scale=wc.scale),
        run=lambda wc: parse_unlearn_run(wc.run).flags(),
    threads: threads_of("unlearn")
    resources:
        **resources_of("unlearn"),
    log:
        "logs/{scale}/unlearn/{run}.log",
    benchmark:
        "benchmarks/{scale}/unlearn/{run}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget unlearn {params.run} --model {input.model} --data {input.data} "
        "--params {params.unlearn:q} --out {output} > {log} 2>&1"
