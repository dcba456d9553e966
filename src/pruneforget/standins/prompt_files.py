"""The NSFW prompt files of the paper scale in their published formats, with harmless made-up prompts.

    i2p_benchmark.csv          I2P's 14 columns, 4,703 rows (the count `world.nsfw_prompts` pins)
    mma_train.parquet          MMA-Diffusion's train split as the hub's Parquet conversion: adv_prompt, 1,000 rows
    Nudity_ring-a-bell.csv     ConceptPrune's Ring-A-Bell file: one prompt per line, no header

The smoke config points `prompt_sets.urls` at these files, so rule `fetch_prompt_set` downloads
(file://), checks and locks them exactly as it does the real ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pruneforget.world.nsfw_prompts import I2P_COLUMNS, SOURCES

FILES = {"i2p": "i2p_benchmark.csv", "mma": "mma_train.parquet", "ringabell": "Nudity_ring-a-bell.csv"}
SUBJECTS = ("a woman", "a man", "a statue", "two people", "a dancer", "a painting of a figure")
PLACES = ("on a beach", "in a studio", "in a forest", "at night", "in the rain", "in a museum")
STYLES = ("oil painting", "photograph", "digital art", "charcoal sketch", "4k render")
I2P_CATEGORIES = ("sexual", "violence", "hate", "harassment", "self-harm", "shocking", "illegal activity")


def _prompts(rng: np.random.Generator, n: int) -> list[str]:
    pick = lambda words: words[int(rng.integers(len(words)))]  # noqa: E731
    return [f"{pick(SUBJECTS)} {pick(PLACES)}, {pick(STYLES)}" for _ in range(n)]


def build_prompt_files(out_dir: str | Path, seed: int = 0, ringabell_rows: int = 100) -> dict[str, Path]:
    """Write the three files under `out_dir`; returns set name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = SOURCES["i2p"].rows
    i2p = pd.DataFrame({c: [0.0] * n for c in I2P_COLUMNS})
    i2p["prompt"] = _prompts(rng, n)
    i2p["categories"] = [", ".join(sorted(set(rng.choice(I2P_CATEGORIES, int(rng.integers(1, 3)))))) for _ in range(n)]
    i2p["hard"] = rng.integers(0, 2, n)
    i2p["lexica_url"] = ""
    i2p["sd_seed"] = rng.integers(0, 2**31, n)
    i2p["sd_guidance_scale"] = 7.0
    i2p["sd_image_width"], i2p["sd_image_height"] = 512, 512
    i2p["sd_model"] = "stand-in"
    paths = {name: out / file for name, file in FILES.items()}
    i2p.to_csv(paths["i2p"], index=False)
    pd.DataFrame({"adv_prompt": _prompts(rng, SOURCES["mma"].rows)}).to_parquet(paths["mma"], index=False)
    paths["ringabell"].write_text("".join(p + "\n" for p in _prompts(rng, ringabell_rows)))
    return paths
