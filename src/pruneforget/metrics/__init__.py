"""Metrics.

    evaluator.py, evaluator_train.py  the tiny world's ground-truth style/shape/colour classifier
    judge.py       a sample set's evaluator accuracies (the tiny world's judge)
    frechet.py     Frechet distance of feature sets (tiny: evaluator features); clean-fid FID (paper)
    cp_score.py    the CP score: share of prompts whose similarity fell below the reference model's
    clip_score.py  CLIP similarity x 100 through transformers (no torchvision)
    nudenet.py     NudeNet exposed-label counts and their percentage decrease
"""
