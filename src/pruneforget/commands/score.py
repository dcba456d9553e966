"""`score`: one metric of one sample set (or model) as a JSON file, for tables and figures to read.

    python -m pruneforget score --metric ua --samples results/tiny/samples/esdx-artists-s0/remove_stripes \
        --evaluator results/tiny/evaluator --params '{"metrics": [...], ...}' --out .../ua.json

`--samples A --out A.json --samples B --out B.json` scores several sets of one model with one
metric in one process (rule score_bundle); every set is scored before any JSON is written, so a
set that cannot be scored leaves none of them.

Metrics and what each needs: `pruneforget.metrics.scoring`. Inputs are checked (flags present,
metric enabled at this scale, weights on disk, sample sets matching their manifests) before any
model is loaded or anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.cli import parse_params
from pruneforget.io import write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", required=True, help="tiny: judge, ua, retain, cp_evaluator, frechet_evaluator, "
                   "denoising_error; sd21: clip, cp_clip, csd, fid, nudenet")
    p.add_argument("--samples", type=Path, action="append",
                   help="sample set directory (PNGs + manifest.csv); repeat, each with its --out, to score several")
    p.add_argument("--reference", type=Path, help="cp_*, csd: the reference (distilled) model's sample set of the "
                   "same prompt set; fid: the COCO reference statistics directory")
    p.add_argument("--evaluator", type=Path, help="tiny: the ground-truth evaluator directory")
    p.add_argument("--model", type=Path, help="denoising_error: the model (pipeline directory)")
    p.add_argument("--data", type=Path, help="frechet_evaluator, denoising_error: the data directory (val.csv)")
    p.add_argument("--params", required=True, type=parse_params, help="the `score` config section as JSON")
    p.add_argument("--out", required=True, type=Path, action="append",
                   help="score JSON file to write (atomically), one per --samples")


def prepare(args: argparse.Namespace, samples: Path | None = None):
    """(metric, inputs) for one sample set (`samples`, None for a metric of a model) after every
    check that needs no model; raises ScoreInputError or SampleSetError."""
    from pruneforget.metrics.registry import metrics
    from pruneforget.metrics.sample_set import read_sample_set
    from pruneforget.metrics.scoring import INPUTS, ScoreInputError, ScoreInputs, check_weights

    known = metrics()
    metric = known.get(args.metric)
    if metric is None:
        raise ScoreInputError(f"unknown metric {args.metric!r}; choose one of {sorted(known)}")
    enabled = args.params.get("metrics", [])
    if metric.name not in enabled:
        raise ScoreInputError(f"metric {metric.name!r} ({metric.scale} scale) is not enabled at this scale: "
                              f"score.metrics is {enabled}")
    given = {name: (samples if name == "samples" else getattr(args, name)) for name in INPUTS}
    missing = [f"--{name}" for name in metric.needs if given[name] is None]
    if missing:
        raise ScoreInputError(f"{metric.name} needs {', '.join(missing)}")
    extra = [f"--{name}" for name in INPUTS if name not in metric.needs and given[name] is not None]
    if extra:
        raise ScoreInputError(f"{metric.name} does not use {', '.join(extra)}")
    for name in ("evaluator", "model", "data"):
        path = given[name]
        if path is not None and not path.exists():
            raise ScoreInputError(f"--{name} {path} does not exist")
    check_weights(metric, args.params)
    inputs = ScoreInputs(**{name: given[name] for name in INPUTS if name != "samples"},
                         paths={name: str(path) for name, path in given.items() if path is not None})
    if samples is not None:
        inputs.samples = read_sample_set(samples)
    if metric.reference_is_samples:
        inputs.reference_set = read_sample_set(args.reference)
    elif args.reference is not None and not args.reference.exists():
        raise ScoreInputError(f"--reference {args.reference} does not exist")
    return metric, inputs


def run(args: argparse.Namespace) -> None:
    from pruneforget.metrics.scoring import score_document

    sets = args.samples or [None]
    if len(sets) != len(args.out):
        sys.exit(f"score: {len(args.samples or [])} --samples but {len(args.out)} --out; "
                 "give one score file per sample set (one --out for a metric of a model)")
    documents = []
    try:
        for samples in sets:
            metric, inputs = prepare(args, samples)
            documents.append(score_document(metric, inputs, metric.run(inputs, args.params)))
    except (ValueError, FileNotFoundError, KeyError, ImportError) as exc:  # input errors (ScoreInputError, SampleSetError, ...)
        sys.exit(f"score: {exc}")
    for out, document in zip(args.out, documents):
        write_json(out, document)
        value = document["value"]
        shown = value if not isinstance(value, dict) else ", ".join(f"{k} {v:.4g}" for k, v in value.items())
        print(f"score: wrote {out} ({metric.name}, n={document['n']}): {shown}")
