"""The tiny world's scores: the ground-truth evaluator judging sample sets (see `unlearning.py`)."""

from __future__ import annotations

from pruneforget.metrics import unlearning as U
from pruneforget.metrics.evaluator import Evaluator, load_evaluator
from pruneforget.metrics.judge import JUDGE_VERSION, judge_set
from pruneforget.metrics.sample_set import SampleSet, load_images, pair_sample_sets
from pruneforget.metrics.inputs import NEEDS
from pruneforget.metrics.scoring import Metric, Result, ScoreInputError, ScoreInputs
from pruneforget.world.tables import LABEL_COLUMNS, read_table
from pruneforget.world.tables import load_images as load_table_images


def _labels(samples: SampleSet, metric: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in samples.manifest.columns]
    if missing:
        raise ScoreInputError(f"{metric}: {samples.manifest_path} has no {missing} column(s); score a tiny-world "
                              "prompt set (removal, synonym or retain), whose rows carry their labels")


def _evaluator(inputs: ScoreInputs) -> Evaluator:
    return load_evaluator(inputs.evaluator)


def _predict(samples: SampleSet, evaluator: Evaluator):
    images = load_images(samples.paths)
    return images, evaluator.predict(images)


def judge(inputs: ScoreInputs, params: dict) -> Result:
    """Evaluator accuracies per head (style, shape, colour), per intended style as per_item."""
    value, per_style = judge_set(inputs.samples, _evaluator(inputs))
    return value, [{"style": s, **v} for s, v in per_style.items()], len(inputs.samples)


def ua(inputs: ScoreInputs, params: dict) -> Result:
    """UA over the set and per target style, on a removal or synonym set (rows ask for a removed style)."""
    s = inputs.samples
    _labels(s, "ua", ["style"])
    ev = _evaluator(inputs)
    images, predicted = _predict(s, ev)
    target = s.manifest["style"].to_numpy()
    p_target = U.target_probability(ev.probabilities(images)["style"], ev.labels["style"], target)
    value = {"ua": U.unlearning_accuracy(predicted["style"], target)}
    value.update({f"ua_{k}": v for k, v in U.unlearning_accuracy_per_style(predicted["style"], target).items()})
    per_item = [{"file": f, "style": t, "predicted_style": p, "p_target": float(q)}
                for f, t, p, q in zip(s.manifest["file"], target, predicted["style"], p_target)]
    return value, per_item, len(s)


def retain(inputs: ScoreInputs, params: dict) -> Result:
    """IRA (style still right) and CRA (shape, colour still right; and their mean) on the retain set."""
    s = inputs.samples
    _labels(s, "retain", LABEL_COLUMNS)
    ev = _evaluator(inputs)
    _, predicted = _predict(s, ev)
    m = s.manifest
    cra = U.cross_domain_retain_accuracy(predicted["shape"], m["shape"], predicted["colour"], m["colour"])
    value = {"ira": U.in_domain_retain_accuracy(predicted["style"], m["style"]),
             "cra": cra["mean"], "cra_shape": cra["shape"], "cra_colour": cra["colour"]}
    per_item = [{"file": f, **{c: m[c].iloc[i] for c in LABEL_COLUMNS},
                 **{f"predicted_{c}": predicted[c][i] for c in LABEL_COLUMNS}}
                for i, f in enumerate(m["file"])]
    return value, per_item, len(s)


def cp_evaluator(inputs: ScoreInputs, params: dict) -> Result:
    """CP = mean 1[p_unlearned(target style) < p_reference(target style)] over same-seed pairs."""
    s, r = inputs.samples, inputs.reference_set
    _labels(s, "cp_evaluator", ["style"])
    rows_s, rows_r = pair_sample_sets(s, r)
    ev = _evaluator(inputs)
    target = s.manifest["style"].to_numpy()[rows_s]
    p = {}
    for key, sset, rows in (("unlearned", s, rows_s), ("reference", r, rows_r)):
        probs = ev.probabilities(load_images([sset.paths[i] for i in rows]))["style"]
        p[key] = U.target_probability(probs, ev.labels["style"], target)
    per_item = [{"file": s.manifest["file"].iloc[i], "reference_file": r.manifest["file"].iloc[j], "style": t,
                 "p_unlearned": float(a), "p_reference": float(b)}
                for i, j, t, a, b in zip(rows_s, rows_r, target, p["unlearned"], p["reference"])]
    return U.cp_evaluator(p["unlearned"], p["reference"]), per_item, len(rows_s)


def frechet_evaluator(inputs: ScoreInputs, params: dict) -> Result:
    """Frechet distance, in the evaluator's feature space, from samples of held-out captions to the
    real held-out images (data/val.csv)."""
    ev = _evaluator(inputs)
    real_table = read_table(inputs.data, "val")
    if len(real_table) < 2 or len(inputs.samples) < 2:
        raise ScoreInputError(f"frechet_evaluator needs at least 2 samples and 2 real images "
                              f"(got {len(inputs.samples)} in {inputs.samples.root}, {len(real_table)} in {inputs.data}/val.csv)")
    sample_features = ev.features(load_images(inputs.samples.paths))
    real_features = ev.features(load_table_images(inputs.data, real_table))
    value = U.frechet_evaluator(sample_features, real_features)
    return value, [{"samples": len(inputs.samples), "real": len(real_table)}], len(inputs.samples)


def denoising_error(inputs: ScoreInputs, params: dict) -> Result:
    """Held-out denoising error of a model (`metrics/denoising.py`) on val images and captions,
    with the draws of `score.denoising` (the settings of `finetune.eval`, so the score of a
    fine-tuned model equals the last row of its eval.csv)."""
    import torch
    from diffusers import DDPMScheduler

    from pruneforget.metrics.denoising import denoising_error as error_of
    from pruneforget.models.diffusion import encode_captions, encode_latents, pipeline_resolution
    from pruneforget.models.load import load_pipeline
    from pruneforget.sample import spread_subset
    from pruneforget.world.tables import load_images_at, read_split

    cfg = params.get("denoising")
    if not cfg:
        raise ScoreInputError("denoising_error needs score.denoising (images, timesteps_per_image, seed)")
    pipe = load_pipeline(inputs.model, device="cuda" if torch.cuda.is_available() else "cpu")
    val = read_split(inputs.data, "val")
    rows = spread_subset(val, cfg["images"]) if cfg["images"] else val
    images = load_images_at(inputs.data, rows, pipeline_resolution(pipe))
    latents = encode_latents(pipe, images)[0] * pipe.vae.config.scaling_factor
    text = encode_captions(pipe, rows["caption"].tolist())
    value = error_of(pipe.unet, DDPMScheduler.from_config(pipe.scheduler.config), latents, text,
                     cfg["timesteps_per_image"], cfg["seed"], batch_size=int(params.get("batch_size", 64)))
    return value, [{"images": len(rows), "timesteps_per_image": cfg["timesteps_per_image"], "seed": cfg["seed"]}], len(rows)


METRICS = (
    Metric("judge", "tiny", JUDGE_VERSION, NEEDS["judge"], judge,
           help="evaluator accuracies (style, shape, colour)"),
    Metric("ua", "tiny", 1, NEEDS["ua"], ua, help="unlearning accuracy on a removal or synonym set"),
    Metric("retain", "tiny", 1, NEEDS["retain"], retain, help="IRA and CRA on the retain set"),
    Metric("cp_evaluator", "tiny", 1, NEEDS["cp_evaluator"], cp_evaluator,
           help="CP with the evaluator's target-style probability"),
    Metric("frechet_evaluator", "tiny", 1, NEEDS["frechet_evaluator"], frechet_evaluator,
           help="Frechet distance to the real held-out images in evaluator features"),
    Metric("denoising_error", "tiny", 1, NEEDS["denoising_error"], denoising_error,
           help="held-out denoising error of a model (no samples)"),
)

