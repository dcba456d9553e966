"""Generate a prompt set with a pipeline: one or more PNGs per prompt plus a manifest.

Each image has its own seeded generator, so an image depends only on (model, prompt, seed,
guidance, steps), not on batch size or on which images were generated before: sampling is
resumable and deterministic on CPU.

With `seeds_per_prompt = k`, prompt p is drawn k times, with seeds `s_p + i` for i = 0..k-1,
where s_p is the prompt's `evaluation_seed` (or base_seed + p without one). Images are numbered
in prompt-major order (image n = prompt n // k, seed index n % k); the manifest records both
indices (`prompt_index`, `seed_index`) so two models' sample sets pair image by image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pruneforget.io import atomic_file

if TYPE_CHECKING:  # diffusers costs 2.5 s of import: judging and scoring need none of it
    from diffusers import StableDiffusionPipeline

MANIFEST_COLUMNS = ["file", "prompt", "seed", "guidance", "steps", "scheduler", "model", "prompt_index", "seed_index"]


def prompt_seeds(prompts: pd.DataFrame, base_seed: int) -> list[int]:
    """Per-prompt seeds: the set's `evaluation_seed` column when present, else base_seed + row."""
    if "evaluation_seed" in prompts.columns:
        return [int(s) for s in prompts["evaluation_seed"]]
    return [base_seed + i for i in range(len(prompts))]


def expand_seeds(seeds: list[int], seeds_per_prompt: int) -> tuple[list[int], list[int], list[int]]:
    """(prompt_index, seed_index, seed) per image for `seeds_per_prompt` draws of each prompt:
    seed i of prompt p is seeds[p] + i (distinct within a prompt, reproducible from the set)."""
    if not isinstance(seeds_per_prompt, int) or seeds_per_prompt < 1:
        raise ValueError(f"seeds_per_prompt must be an integer >= 1, got {seeds_per_prompt!r}")
    k = seeds_per_prompt
    prompt_index = [p for p in range(len(seeds)) for _ in range(k)]
    seed_index = [i for _ in range(len(seeds)) for i in range(k)]
    return prompt_index, seed_index, [seeds[p] + i for p, i in zip(prompt_index, seed_index)]


def as_prompt_set(table: pd.DataFrame) -> pd.DataFrame:
    """A prompt set from a prompt CSV (`prompt` column) or an image table (`caption` column:
    sampling the held-out captions of val.csv); other columns pass through as labels."""
    if "prompt" in table.columns:
        return table
    if "caption" in table.columns:
        return table.rename(columns={"caption": "prompt"})
    raise ValueError(f"a prompt set needs a `prompt` (or `caption`) column; found {list(table.columns)}")


def read_prompt_set(path: Path) -> pd.DataFrame:
    """A prompt CSV as a prompt set, refused (ValueError naming the file, the row and the fix)
    when it is empty, has only a header, lacks the prompt column or holds an empty prompt:
    before any model is loaded, and before a finished-looking empty sample set is written."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompt set {path} does not exist; build it (rule prepare_data / fetch_prompt_set) or fix the path")
    try:
        table = pd.read_csv(path, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"prompt set {path} is empty; it needs a header with a `prompt` column and one row per prompt") from None
    try:
        prompts = as_prompt_set(table)
    except ValueError as exc:
        raise ValueError(f"prompt set {path}: {exc}") from None
    if prompts.empty:
        raise ValueError(f"prompt set {path} has a header and no prompts; add one row per prompt")
    blank = [i for i, p in enumerate(prompts["prompt"]) if not str(p).strip()]
    if blank:
        raise ValueError(f"prompt set {path}: row {blank[0] + 2} (line of the file) has an empty prompt"
                         f"{f' ({len(blank)} such rows)' if len(blank) > 1 else ''}; fill it in or delete the row")
    return prompts


def spread_subset(prompts: pd.DataFrame, n: int, keep: Sequence[str] = ()) -> pd.DataFrame:
    """`n` rows evenly spaced through `prompts`, in order, plus every row whose prompt is in `keep`
    (the prompts a figure shows). Prompt tables are grouped by label (style, then shape, ...), so
    the first n rows would miss whole styles; every k-th row does not."""
    if n <= 0:
        raise ValueError(f"a subset needs a positive size, got {n}")
    if n >= len(prompts):
        return prompts
    idx = set(np.linspace(0, len(prompts) - 1, n).round().astype(int).tolist())
    if keep:  # (caption tables such as val.csv have no `prompt` column, and nothing to keep)
        idx |= set(np.flatnonzero(prompts["prompt"].isin(list(keep))).tolist())
    return prompts.iloc[sorted(idx)].reset_index(drop=True)


def generate(pipe: StableDiffusionPipeline, prompts: list[str], seeds: list[int], guidance: float, steps: int) -> list:
    """Images (PIL) for `prompts`; each image's initial noise comes from its own seeded CPU
    generator, so CPU and GPU runs start from the same latents."""
    size = pipe.unet.config.sample_size
    shape = (pipe.unet.config.in_channels, size, size)
    latents = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    with torch.no_grad():
        return pipe(
            prompts,
            num_inference_steps=steps,
            guidance_scale=guidance,
            latents=latents.to(pipe.device, pipe.unet.dtype),
        ).images


def sample_prompt_set(
    pipe: StableDiffusionPipeline,
    prompts: pd.DataFrame,
    out_dir: Path,
    *,
    guidance: float,
    steps: int,
    scheduler: str,
    model_name: str,
    batch_size: int = 16,
    base_seed: int = 0,
    seeds_per_prompt: int = 1,
) -> pd.DataFrame:
    """Write `out_dir/NNNNN.png` for every (prompt, seed) and return the manifest (also written
    as CSV): the MANIFEST_COLUMNS, then the prompt set's other columns (labels) passed through.

    Images already present in `out_dir` are kept (resume after an interruption).
    """
    prompts = as_prompt_set(prompts).reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt_index, seed_index, seeds = expand_seeds(prompt_seeds(prompts, base_seed), seeds_per_prompt)
    texts = [prompts["prompt"].iloc[p] for p in prompt_index]
    files = [f"{n:05d}.png" for n in range(len(seeds))]
    todo = [n for n, f in enumerate(files) if not (out_dir / f).exists()]
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc=f"sample {model_name}", unit="img")
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = generate(pipe, [texts[n] for n in chunk], [seeds[n] for n in chunk], guidance, steps)
        for n, image in zip(chunk, images):
            # Atomically: a kill mid-write leaves no truncated PNG for a resumed run to keep.
            with atomic_file(out_dir / files[n]) as tmp:
                image.save(tmp, format="PNG")
        bar.update(len(chunk))
    bar.close()
    manifest = pd.DataFrame(
        {"file": files, "prompt": texts, "seed": seeds, "guidance": guidance, "steps": steps,
         "scheduler": scheduler, "model": model_name, "prompt_index": prompt_index, "seed_index": seed_index}
    )
    extra = prompts.drop(columns=[c for c in prompts.columns if c in MANIFEST_COLUMNS or c == "evaluation_seed"])
    labels = extra.iloc[prompt_index].reset_index(drop=True)
    manifest = pd.concat([manifest, labels], axis=1)
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    return manifest
