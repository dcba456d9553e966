"""Metrics.

    evaluator.py   the tiny world's ground-truth style/shape/colour classifier (trained by train/classifier.py)
    judge.py       a sample set's evaluator accuracies (the tiny world's judge)
    frechet.py     Frechet distance of feature sets (tiny: evaluator features); clean-fid FID (paper)
    cp_score.py    the CP score: share of prompts whose similarity fell below the reference model's
    clip_score.py  CLIP similarity x 100 through transformers (no torchvision)
    nudenet.py     NudeNet exposed-label counts and their percentage decrease
    csd.py         CSD style similarity (CLIP ViT-L + CSD's style head, released checkpoint)
    fid_reference.py  COCO val2017 clean-fid statistics (computed once) and FID against them
    unlearning.py  the tiny world's UA, IRA, CRA, CP with evaluator probabilities, Frechet distance
    sample_set.py  reading a sample set for scoring (manifest checked against its PNGs), pairing two sets
    scoring.py     the metrics of the `score` command: inputs, weight checks, the score document
    scores_tiny.py, scores_paper.py   the metric functions of each scale
"""
