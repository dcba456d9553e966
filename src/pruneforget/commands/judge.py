"""`judge`: score tiny-world sample sets with the ground-truth evaluator (style, shape, colour accuracy).

`--samples A --out A.json --samples B --out B.json` judges several sets in one process (the
bundle of rule judge_bundle); every set is judged before any JSON is written, so a set that
cannot be judged leaves none of them."""

from __future__ import annotations

import argparse
import sys

from pruneforget.io import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", required=True, action="append",
                        help="sample set directory: PNGs + manifest.csv with label columns (repeat with --out)")
    parser.add_argument("--evaluator", required=True, help="evaluator artifact directory (train-evaluator)")
    parser.add_argument("--out", required=True, action="append", help="score JSON file to write (atomically), one per --samples")


def run(args: argparse.Namespace) -> None:
    from pruneforget.metrics.evaluator import load_evaluator
    from pruneforget.metrics.judge import judge_samples

    if len(args.samples) != len(args.out):
        sys.exit(f"judge: {len(args.samples)} --samples but {len(args.out)} --out; give one score file per sample set")
    evaluator = load_evaluator(args.evaluator)
    scores = []
    for samples in args.samples:
        try:
            score = judge_samples(samples, evaluator)
        except (ValueError, FileNotFoundError) as exc:
            sys.exit(f"judge: {exc}")
        score["inputs"] = {"samples": str(samples), "evaluator": str(args.evaluator), "models": score.pop("models")}
        scores.append(score)
    for out, score in zip(args.out, scores):
        write_json(out, score)
        print(f"judge: wrote {out}: " + ", ".join(f"{k} {v:.4f}" for k, v in score["value"].items()))
