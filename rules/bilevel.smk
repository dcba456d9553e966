"""The bilevel method (paper Algorithm 1): fine-tune expert-80 and remove a setting's concepts in
one run. `bilevel-{setting}-s{seed}` is the paper's method, `bilevelsep-{setting}-s{seed}` the same
with vartheta a second copy (separate mode: the run whose penalty trace figures.fig_penalty draws),
`bilevelcode-{setting}-s{seed}` what the authors' code does (`bilevel.code`), and
`bilevel-lam{lam}-K{K}-s{seed}` the lambda x K sweep on the artist setting (tiny; `bilevel.sweep`);
a strength knob before the seed (`bilevel-artists-esdx-K10-s0`: unlearn/knobs.py, a point of
figures.fig_frontier) reaches the command as `--knob NAME=VALUE`, set after the variant's overrides.
Each is a pipeline directory plus metrics.csv, eval.csv, cost.json and run_config.json.
(Two-stage ESD runs through rules/unlearn.smk: esdx, esdu, esd.)
"""

from pruneforget.bilevel.runs import NAME_PATTERN as BILEVEL_RUN, parse_run as parse_bilevel_run


rule bilevel:
    """Algorithm 1 (bilevel-*, bilevelsep-*, a sweep point bilevel-lam*-K*) or the authors' code
    (bilevelcode-*) on expert-80; the run's name gives its variant, setting, seed, lambda and K,
    or a strength knob (pruneforget/bilevel/runs.py)."""
    input:
        expert=lambda wc: f"results/{wc.scale}/{parse_bilevel_run(wc.run).source()}",
        teacher="results/{scale}/base",
        data="results/{scale}/data",
        evaluator=finetune_evaluator,
    output:
        directory("results/{scale}/{run}"),
    wildcard_constraints:
        run=BILEVEL_RUN,
    params:
        bilevel=lambda wc: bilevel_section(),
        finetune=lambda wc: section("finetune", wc.scale),
        unlearn=lambda wc: bilevel_unlearn_section(parse_bilevel_run(wc.run), wc.scale),
        run=lambda wc: f"{parse_bilevel_run(wc.run).flags()} {added_concepts(parse_bilevel_run(wc.run), wc.scale)}".strip(),
        evaluator_flag=evaluator_flag,
        eval=eval_flag,
        launch=launcher("bilevel"),
    threads: threads_of("bilevel")
    resources:
        **resources_of("bilevel"),
    log:
        "logs/{scale}/bilevel/{run}.log",
    benchmark:
        "benchmarks/{scale}/bilevel/{run}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{params.launch} bilevel --expert {input.expert} --teacher {input.teacher} --data {input.data} "
        "{params.evaluator_flag} {params.eval} {params.run} "
        "--params {params.bilevel:q} --finetune {params.finetune:q} --unlearn {params.unlearn:q} "
        "--out {output} > {log} 2>&1"


rule bilevel_sweep:
    """Every run of the sensitivity sweep (`bilevel.sweep`, one at a time around bilevel.lam and
    bilevel.k; the centre is bilevel-artists) for the config's seed: `snakemake bilevel_sweep`."""
    input:
        sweep_runs(),
