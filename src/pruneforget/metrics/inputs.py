"""Which inputs each metric of `score` reads: the command's flags, and what rules/score.smk makes
its input paths from. Stated once here; the metrics (scores_tiny.py, scores_paper.py) take their
`needs` from it. Light on purpose: the rules import it at every Snakemake start."""

from __future__ import annotations

# metric -> the inputs it reads (flags of `python -m pruneforget score`)
NEEDS: dict[str, tuple[str, ...]] = {
    # the tiny world's, with its ground-truth evaluator
    "judge": ("samples", "evaluator"),
    "ua": ("samples", "evaluator"),
    "retain": ("samples", "evaluator"),
    "cp_evaluator": ("samples", "reference", "evaluator"),
    "frechet_evaluator": ("samples", "evaluator", "data"),
    "denoising_error": ("model", "data"),
    # the paper's
    "clip": ("samples",),
    "cp_clip": ("samples", "reference"),
    "csd": ("samples", "reference"),
    "fid": ("samples", "reference"),
    "nudenet": ("samples",),
}
# Metrics whose `reference` is the reference model's sample set of the same prompt set and seeds
# (score.reference_model); fid's reference is the FID statistics directory instead.
PAIRED = frozenset({"cp_evaluator", "cp_clip", "csd"})
