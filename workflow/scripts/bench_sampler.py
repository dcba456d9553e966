"""Which sampler and step count the tiny world's evaluation sets need: sample a model with each
(scheduler, steps) and print what the evaluator sees (style/shape/colour accuracy on the retain
set, style accuracy on one removal set, Frechet distance of held-out captions to the real
held-out images) beside the seconds per image.

    PYTHONPATH=src OMP_NUM_THREADS=1 python workflow/scripts/bench_sampler.py results/tiny/base

Same prompts and seeds as the workflow's sample sets (sample.eval_prompts x seeds_per_prompt; val:
one seed each), generated in memory: nothing is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from pruneforget.metrics import unlearning as U
from pruneforget.metrics.evaluator import load_evaluator
from pruneforget.metrics.judge import score_predictions
from pruneforget.models.load import load_pipeline, with_scheduler
from pruneforget.sample import expand_seeds, generate, prompt_seeds, read_prompt_set, spread_subset
from pruneforget.world.tables import LABEL_COLUMNS, load_images, read_table

SETTINGS = [("ddim", 25), ("ddim", 10), ("dpm", 15), ("dpm", 10), ("dpm", 8), ("dpm", 5)]


def images_of(pipe, prompts, seeds_per_prompt: int, guidance: float, steps: int, batch: int):
    index, _, seeds = expand_seeds(prompt_seeds(prompts, 0), seeds_per_prompt)
    truth = prompts.iloc[index].reset_index(drop=True)
    texts = truth["prompt"].tolist()
    images = []
    for i in range(0, len(texts), batch):
        images += generate(pipe, texts[i:i + batch], seeds[i:i + batch], guidance, steps)
    return images, truth.astype({h: str for h in LABEL_COLUMNS if h in truth})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--removed", default="stripes", help="the removal set to judge (remove_<style>)")
    p.add_argument("--val", type=int, default=200, help="held-out captions for the Frechet distance")
    p.add_argument("--settings", nargs="*", default=None, metavar="SCHEDULER:STEPS", help="e.g. ddim:25 ddim:10 (default: all)")
    args = p.parse_args()

    cfg = yaml.safe_load(Path(args.config).read_text())
    sample, scale = cfg["sample"], cfg["scale"]
    data = Path(f"results/{scale}/data")
    evaluator = load_evaluator(f"results/{scale}/evaluator")
    sets = {
        "retain": (spread_subset(read_prompt_set(data / "prompts/retain.csv"), sample["eval_prompts"]), sample["seeds_per_prompt"]),
        "remove": (spread_subset(read_prompt_set(data / f"prompts/remove_{args.removed}.csv"), sample["eval_prompts"]),
                   sample["seeds_per_prompt"]),
        "val": (spread_subset(read_prompt_set(data / "val.csv"), args.val), 1),
    }
    real = evaluator.features(load_images(data, read_table(data, "val")))

    print(f"{'sampler':10s} {'s/img':>6s} {'retain style':>13s} {'shape':>6s} {'colour':>7s} "
          f"{'remove style':>13s} {'Frechet val':>12s}")
    settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings] if args.settings else SETTINGS
    for scheduler, steps in settings:
        pipe = with_scheduler(load_pipeline(args.model), scheduler)
        pipe.set_progress_bar_config(disable=True)
        t0, n, acc = time.perf_counter(), 0, {}
        for name, (prompts, k) in sets.items():
            images, truth = images_of(pipe, prompts, k, sample["guidance"], steps, sample["batch_size"])
            n += len(images)
            if name == "val":
                acc["frechet"] = U.frechet_evaluator(evaluator.features(images), real)
            else:
                acc[name] = score_predictions(evaluator.predict(images), truth, evaluator.labels)[0]
        per_image = (time.perf_counter() - t0) / n
        r, m = acc["retain"], acc["remove"]
        print(f"{scheduler + ' ' + str(steps):10s} {per_image:6.3f} {r['style_acc']:13.3f} {r['shape_acc']:6.3f} "
              f"{r['colour_acc']:7.3f} {m['style_acc']:13.3f} {acc['frechet']:12.2f}", flush=True)


if __name__ == "__main__":
    main()
