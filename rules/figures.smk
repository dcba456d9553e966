"""Figures and tables: PDFs under figures/, rebuilt from scores, training runs and sample sets only.

Each target has its PNG and the CSV of its plotted numbers beside it, and appears in the
Snakemake report (`snakemake --report report.html`) under its part of the paper."""

import glob

# Every table and figure, with its part of the paper (report category), from the package; each
# has its caption in workflow/report/{figure}.rst, its rows and columns in the config's `figures:`.
from pruneforget.report.specs import FIGURES as FIGURE_SPECS

FIGURES = {name: category for name, (_, category) in FIGURE_SPECS.items()}


# The drawing code is an input of every figure: editing it redraws the figures (seconds) and reruns
# nothing upstream. Training and sampling code is not an input of theirs (hours): use --forcerun.
REPORT_CODE = sorted(glob.glob("src/pruneforget/report/*.py")) + [
    f"src/pruneforget/commands/{name}.py" for name in ("report", "report_base")
]


# A plot takes seconds: on a cluster it runs on the submitting node instead of waiting in the queue.
localrules:
    report_base,
    paper_figures,


rule paper_figures:
    """Every table and figure of the paper at this scale (`snakemake --cores 2 paper_figures`):
    the whole experiment, about 1.5 hours on 2 CPU cores for the tiny world."""
    input:
        paper_figure_targets(),


rule report_base:
    """Teacher quality: a grid of the base model's samples and the evaluator's accuracies."""
    input:
        samples=f"results/{SCALE}/samples/base/val",
        scores=f"results/{SCALE}/scores/base/val/judge.json",
        data=f"results/{SCALE}/data",
        code=REPORT_CODE,
    output:
        # The PNG and the CSV of plotted numbers beside the PDF are artifacts too (DVC tracks them).
        pdf=report("figures/teacher_quality.pdf", caption="../workflow/report/teacher_quality.rst", category="Teacher"),
        png="figures/teacher_quality.png",
        csv=report("figures/teacher_quality.csv", caption="../workflow/report/teacher_quality.rst", category="Teacher"),
    log:
        f"logs/{SCALE}/report_base.log",
    benchmark:
        f"benchmarks/{SCALE}/report_base.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget report-base --samples {input.samples} --scores {input.scores} "
        "--data {input.data} --out {output.pdf} > {log} 2>&1"


# One rule per figure (report_table1, report_fig4, ...), all alike: the figure's inputs and spec
# from the config, one `report` call.
for name, category in FIGURES.items():

    rule:
        name:
            f"report_{name}"
        localrule: True
        input:
            unpack(figure_input(name)),
            code=REPORT_CODE,
        output:
            pdf=report(f"figures/{name}.pdf", caption=f"../workflow/report/{name}.rst", category=category),
            png=f"figures/{name}.png",
            csv=report(f"figures/{name}.csv", caption=f"../workflow/report/{name}.rst", category=category),
        params:
            figures=figure_params(name),
            # DVC's params of this stage: the keys the spec reads, so an edit of another figure
            # leaves this one alone (workflow/scripts/dvc_sync.py).
            dvc_params=figure_config_keys(config, name),
            # The shell line is evaluated when the job runs, after the loop ended: read the name from params.
            name=name,
        log:
            f"logs/{SCALE}/report/{name}.log",
        benchmark:
            f"benchmarks/{SCALE}/report/{name}.tsv"
        conda:
            CONDA_ENV
        shell:
            "python -m pruneforget report --figure {params.name} --params {params.figures:q} "
            "--scores {input.scores} --runs {input.runs} --samples {input.samples} --out {output.pdf} > {log} 2>&1"
