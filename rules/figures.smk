"""Figures and tables: PDFs under figures/, rebuilt from scores and sample sets only."""


# A plot takes seconds: on a cluster it runs on the submitting node instead of waiting in the queue.
localrules:
    report_base,


rule report_base:
    """Teacher quality: a grid of the base model's samples and the evaluator's accuracies."""
    input:
        samples=f"results/{SCALE}/samples/base/val",
        scores=f"results/{SCALE}/scores/base/val/judge.json",
        data=f"results/{SCALE}/data",
    output:
        # The PNG and the CSV of plotted numbers beside the PDF are artifacts too (DVC tracks them).
        pdf="figures/teacher_quality.pdf",
        png="figures/teacher_quality.png",
        csv="figures/teacher_quality.csv",
    log:
        f"logs/{SCALE}/report_base.log",
    benchmark:
        f"benchmarks/{SCALE}/report_base.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m pruneforget report-base --samples {input.samples} --scores {input.scores} "
        "--data {input.data} --out {output.pdf} > {log} 2>&1"
