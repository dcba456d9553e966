"""Every metric of `score` by name: the tiny world's (scores_tiny.py) and the paper's
(scores_paper.py), both built on the types of scoring.py."""

from __future__ import annotations

from pruneforget.metrics.scoring import Metric


def metrics() -> dict[str, Metric]:
    """All metrics by name (the paper's modules import CLIP / NudeNet code lazily, inside them)."""
    from pruneforget.metrics import scores_paper, scores_tiny

    return {m.name: m for m in (*scores_tiny.METRICS, *scores_paper.METRICS)}
