"""`train-evaluator`: train the tiny world's style/shape/colour classifier and check its held-out accuracy.
Resumable: a rerun after a crash continues from the last checkpoint (`evaluator.checkpoint_every`)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from pruneforget.cli import parse_params
from pruneforget.io import command_fingerprint, resumable_dir, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=parse_params, required=True, help="the `evaluator` config section as JSON")
    parser.add_argument("--data", required=True, type=Path, help="tiny world data directory (train.csv, val.csv, world.json)")
    parser.add_argument("--out", required=True, type=Path, help="artifact directory to write (replaced atomically)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def run(args: argparse.Namespace) -> None:
    from pruneforget.metrics.evaluator import save_evaluator
    from pruneforget.train.classifier import check_params, held_out_accuracy, train_evaluator
    from pruneforget.world.tables import load_images, read_table, read_world

    params = args.params
    try:
        check_params(params)
    except ValueError as exc:
        sys.exit(f"train-evaluator: {exc}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    world = read_world(args.data)
    if world.get("kind") != "tiny":
        sys.exit(f"train-evaluator: {args.data} is a {world.get('kind')!r} world; the evaluator needs the tiny world")
    labels = world["labels"]
    train, val = read_table(args.data, "train"), read_table(args.data, "val")
    start = time.time()
    with resumable_dir(args.out, command_fingerprint(args), drop=("checkpoints",)) as work:
        evaluator = train_evaluator(load_images(args.data, train), train, labels, params, work)
        accuracy = held_out_accuracy(evaluator, load_images(args.data, val), val)
        seconds = round(time.time() - start, 1)  # printed, not saved: the artifact must rebuild byte-identical
        worst = min(accuracy["accuracy"].values())
        print("train-evaluator: held-out accuracy " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy["accuracy"].items()))
        if worst < params["min_accuracy"]:
            # Nothing is left: a weak judge must not be taken for a finished artifact, and a rerun
            # with other settings has nothing to resume.
            shutil.rmtree(work)
            sys.exit(f"train-evaluator: held-out accuracy {worst:.4f} < evaluator.min_accuracy {params['min_accuracy']}; "
                     "raise evaluator.steps or evaluator.width, or check the world's styles are distinguishable")
        save_evaluator(evaluator, work, {"train_params": params, "data": str(args.data)})
        write_json(work / "accuracy.json", accuracy)
    print(f"train-evaluator: wrote {args.out} ({seconds} s)")
