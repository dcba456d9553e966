"""Metrics: the tiny-world ground-truth evaluator; later CLIP, CP, CSD, FID, NudeNet."""
