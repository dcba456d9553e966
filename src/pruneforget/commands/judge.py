"""`judge`: score a tiny-world sample set with the ground-truth evaluator (style, shape, colour accuracy)."""

from __future__ import annotations

import argparse
import sys

from pruneforget.io import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", required=True, help="sample set directory: PNGs + manifest.csv with label columns")
    parser.add_argument("--evaluator", required=True, help="evaluator artifact directory (train-evaluator)")
    parser.add_argument("--out", required=True, help="score JSON file to write (atomically)")


def run(args: argparse.Namespace) -> None:
    from pruneforget.metrics.evaluator import load_evaluator
    from pruneforget.metrics.judge import judge_samples

    try:
        score = judge_samples(args.samples, load_evaluator(args.evaluator))
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"judge: {exc}")
    score["inputs"] = {"samples": str(args.samples), "evaluator": str(args.evaluator), "models": score.pop("models")}
    write_json(args.out, score)
    print(f"judge: wrote {args.out}: " + ", ".join(f"{k} {v:.4f}" for k, v in score["value"].items()))
