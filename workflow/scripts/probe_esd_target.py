"""Probe ESD settings on the tiny world's distilled model before committing them to the config.

    python workflow/scripts/probe_esd_target.py esdx '{"target": "empty", "lr": 1e-3, "steps": 40}' \
        '{"target": "anchor", "lr": 5e-4}'

Each JSON argument overrides `unlearn.esd` (resolved for METHOD and the artist setting) for one
run from results/tiny/ft-80-kd-pruned-s0; the script prints the evaluator's style, shape and colour
accuracy on evenly spread removal and retain prompts after the run, and before any run. This is how
the tiny config's ESD target and lr were chosen (see the comment at `unlearn.esd.target`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from pruneforget.metrics.evaluator import load_evaluator
from pruneforget.metrics.judge import judge_pipeline
from pruneforget.models.load import load_pipeline
from pruneforget.sample import spread_subset
from pruneforget.unlearn.esd import method_params, unlearn
from pruneforget.unlearn.prompts import concept_set


def prompt_tables(data: Path, removed: list[str], n: int) -> dict[str, pd.DataFrame]:
    removal = pd.concat([pd.read_csv(data / "prompts" / f"remove_{s}.csv") for s in removed], ignore_index=True)
    return {"removal": spread_subset(removal, n), "retain": spread_subset(pd.read_csv(data / "prompts" / "retain.csv"), n)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=["esdx", "esdu", "esd"])
    p.add_argument("overrides", nargs="*", type=json.loads, help="JSON objects overriding unlearn.esd, one run each")
    p.add_argument("--results", type=Path, default=Path("results/tiny"))
    p.add_argument("--model", default="ft-80-kd-pruned-s0")
    p.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    p.add_argument("--prompts", type=int, default=12, help="removal and retain prompts, evenly spread")
    p.add_argument("--seeds", type=int, default=2, help="images per prompt")
    args = p.parse_args()

    config = yaml.safe_load(args.config.read_text())
    evaluator = load_evaluator(args.results / "evaluator")
    tables = prompt_tables(args.results / "data", config["world"]["remove_styles"], args.prompts)
    sample = config["sample"]

    def report(label: str, pipe, seconds: float = 0.0) -> None:
        acc = {k: judge_pipeline(pipe, evaluator, t, args.seeds, sample["guidance"], sample["steps"]) for k, t in tables.items()}
        print(f"{label} ({seconds:.0f} s): " + "; ".join(
            f"{k} " + " ".join(f"{h} {v:.2f}" for h, v in a.items()) for k, a in acc.items()), flush=True)

    def fresh():
        pipe = load_pipeline(args.results / args.model)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    report("before", fresh())
    for over in args.overrides:
        params = {**method_params(config["unlearn"]["esd"], args.method, "artists"), **over}
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            pipe = unlearn(fresh(), concept_set(config["unlearn"]["artists"], args.results / "data"), params,
                           seed=0, work_dir=tmp).pipe
        report(f"{args.method} {json.dumps(over)}", pipe, time.perf_counter() - start)


if __name__ == "__main__":
    main()
