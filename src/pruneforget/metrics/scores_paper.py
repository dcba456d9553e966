"""The paper-scale scores (section 4): CLIP score, CP with CLIP, CSD, FID, NudeNet counts.

Sample sets at this scale run to thousands of 768 px images, so images are read in batches of
`score.batch_size`, never all at once.
"""

from __future__ import annotations

import numpy as np
import torch

from pruneforget.metrics.clip_score import PAPER_CLIP, clip_scores
from pruneforget.metrics.cp_score import cp_score
from pruneforget.metrics.sample_set import image_batches, pair_sample_sets
from pruneforget.metrics.inputs import NEEDS
from pruneforget.metrics.scoring import Metric, Result, ScoreInputs, load_clip_checked


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _clip_of(model, tokenizer, paths, prompts, batch_size: int) -> np.ndarray:
    parts = [clip_scores(model, tokenizer, images, prompts[k:k + len(images)], batch_size=batch_size)
             for k, images in zip(range(0, len(paths), batch_size), image_batches(paths, batch_size))]
    return np.concatenate(parts)


def clip(inputs: ScoreInputs, params: dict) -> Result:
    """Mean CLIP score, 100 x cos(T(prompt), I(image)), ViT-B/32 (Table 1 lower is better for an
    erased style; Table 3 / COCO higher is better)."""
    s = inputs.samples
    model, tok = load_clip_checked(params.get("clip_model", PAPER_CLIP), _device())
    scores = _clip_of(model, tok, s.paths, list(s.manifest["prompt"]), int(params.get("batch_size", 32)))
    per_item = [{"file": f, "clip": float(x)} for f, x in zip(s.manifest["file"], scores)]
    return float(scores.mean()), per_item, len(s)


def cp_clip(inputs: ScoreInputs, params: dict) -> Result:
    """CP = mean_i 1[CLIP(p_i, x_unlearned_i) < CLIP(p_i, x_reference_i)], same prompt and seed."""
    s, r = inputs.samples, inputs.reference_set
    rows_s, rows_r = pair_sample_sets(s, r)
    model, tok = load_clip_checked(params.get("clip_model", PAPER_CLIP), _device())
    bs = int(params.get("batch_size", 32))
    prompts = [s.manifest["prompt"].iloc[i] for i in rows_s]
    u = _clip_of(model, tok, [s.paths[i] for i in rows_s], prompts, bs)
    ref = _clip_of(model, tok, [r.paths[j] for j in rows_r], prompts, bs)
    per_item = [{"file": s.manifest["file"].iloc[i], "reference_file": r.manifest["file"].iloc[j],
                 "clip_unlearned": float(a), "clip_reference": float(b)}
                for i, j, a, b in zip(rows_s, rows_r, u, ref)]
    return cp_score(u, ref), per_item, len(rows_s)


def csd(inputs: ScoreInputs, params: dict) -> Result:
    """Mean CSD style cosine (in [-1, 1]) between each sample and the reference model's same-seed
    image. Table 1 shows 100 x this (its column's `scale`), as CP's fraction is shown in percent."""
    from pruneforget.metrics.csd import CSD_BACKBONE, csd_similarity, load_csd

    s, r = inputs.samples, inputs.reference_set
    rows_s, rows_r = pair_sample_sets(s, r)
    model = load_csd(params["csd_checkpoint"], params.get("csd_backbone") or CSD_BACKBONE, _device())
    bs = int(params.get("batch_size", 32))
    a_paths, b_paths = [s.paths[i] for i in rows_s], [r.paths[j] for j in rows_r]
    sims = np.concatenate([csd_similarity(model, a, b, bs)
                           for a, b in zip(image_batches(a_paths, bs), image_batches(b_paths, bs))])
    per_item = [{"file": s.manifest["file"].iloc[i], "reference_file": r.manifest["file"].iloc[j], "csd": float(x)}
                for i, j, x in zip(rows_s, rows_r, sims)]
    return float(sims.mean()), per_item, len(rows_s)


def fid(inputs: ScoreInputs, params: dict) -> Result:
    """FID of the samples against the stored COCO val2017 statistics (`reference`), embedded with
    the statistics' own extractor (clean-fid's Inception at sd21; CLIP features in the smoke)."""
    from pruneforget.metrics.fid_reference import fid_against_reference

    s = inputs.samples
    value = fid_against_reference(s.paths, inputs.reference, batch_size=int(params.get("batch_size", 32)),
                                  num_workers=int(params.get("num_workers", 8)))
    return float(value), [], len(s)


def nudenet(inputs: ScoreInputs, params: dict) -> Result:
    """Per-label counts of images NudeNet finds exposed (score > threshold), plus images with any
    label (`any`). Fig. 7 and Table 2 compare these counts between models."""
    from pruneforget.metrics.nudenet import EXPOSED_LABELS, THRESHOLD, count_labels, detect_labels

    s = inputs.samples
    found = detect_labels([str(p) for p in s.paths], threshold=float(params.get("nudenet_threshold", THRESHOLD)))
    counts = count_labels(found, EXPOSED_LABELS)
    per_item = [{"file": f, "labels": sorted(found[str(p)])} for f, p in zip(s.manifest["file"], s.paths)]
    return {**counts, "any": sum(bool(v) for v in found.values())}, per_item, len(s)


METRICS = (
    Metric("clip", "sd21", 1, NEEDS["clip"], clip, help="CLIP score x 100 (ViT-B/32) against each sample's prompt"),
    Metric("cp_clip", "sd21", 1, NEEDS["cp_clip"], cp_clip,
           help="CP score with CLIP similarity against the reference (distilled) model"),
    # Version 2: the mean cosine; version 1 returned 100 x it, and Table 1's scale: 100 made 10,000
    # of an identical model (the sd21 smoke's first Table 1).
    Metric("csd", "sd21", 2, NEEDS["csd"], csd,
           help="mean CSD style cosine to the reference model's same-seed images"),
    Metric("fid", "sd21", 1, NEEDS["fid"], fid,
           help="FID against COCO val2017 statistics with their extractor (clean-fid Inception, or CLIP in the smoke)"),
    Metric("nudenet", "sd21", 1, NEEDS["nudenet"], nudenet, help="NudeNet exposed-label counts (score > 0.5)"),
)
