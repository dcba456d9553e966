"""What a bilevel run is made of, from config and data: the variant's settings, the concepts
(continual runs keep the earlier ones), and the upper level's target model and batches.

Variants of the `bilevel` section: `paper` (Algorithm 1 as stated), `separate` (Algorithm 1 with
vartheta a second copy of the model: `mode: separate`, the run that measures the penalty) and `code`
(the authors' code: the overrides under `bilevel.code`); a sweep run overrides lambda and K, a
frontier run one strength knob (unlearn/knobs.py), both after the variant's overrides.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline
from torch import nn

from pruneforget.bilevel.algorithm import BilevelInputError
from pruneforget.io import read_json
from pruneforget.models.diffusion import encode_captions, encode_latents, pipeline_resolution
from pruneforget.unlearn.concepts import ConceptSet
from pruneforget.unlearn.esd import esd_prompts, latent_shape, prompt_pool
from pruneforget.unlearn.knobs import BILEVEL, apply_knob, check_knob
from pruneforget.unlearn.uce import uce_edit
from pruneforget.unlearn.upper import UpperContext
from pruneforget.unlearn.xt import ConceptPrompts, NoisedConceptImages, PartialSampler
from pruneforget.world.tables import load_images_at, read_table, read_world

VARIANTS = ("paper", "separate", "code")
SECTION_ONLY = ("code", "sweep")  # keys of the section that are not settings of one run


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override`'s values, nested mappings merged key by key."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def run_params(section: dict, variant: str = "paper", lam: float | None = None, k: int | None = None,
               upper: str | None = None, knob: tuple[str, int | float] | None = None) -> dict:
    """The settings of one run: the section, the variant's overrides, then a sweep's lambda / K,
    an upper-level method replacing `upper.method` and a strength knob (name, value) replacing
    its key (after the variant, so `bilevelcode-artists-K5` runs the authors' code at K 5)."""
    if variant not in VARIANTS:
        raise BilevelInputError(f"variant {variant!r} is not one of {VARIANTS}")
    params = {key: v for key, v in section.items() if key not in SECTION_ONLY}
    if variant == "code":
        params = deep_merge(params, section.get("code") or {})
    elif variant == "separate":
        params["mode"] = "separate"
    if lam is not None:
        params["lam"] = lam
    if k is not None:
        params["k"] = k
    if upper is not None:
        params["upper"] = {**params["upper"], "method": upper}
    if knob is not None:
        try:
            check_knob(knob[0], BILEVEL)
            params = apply_knob(params, BILEVEL, *knob)
        except ValueError as exc:
            raise BilevelInputError(str(exc)) from exc
    return params


def run_concepts(setting: dict, expert_dir: str | os.PathLike, add: list[str] | None) -> list[str]:
    """The concepts of a run. Without `add`: the setting's. Continual (`add` given): the concepts
    the starting model was already unlearned for (its run_config.json or unlearn.json), then the
    added ones, so the upper objective keeps every earlier concept in its list."""
    if not add:
        return list(setting["concepts"])
    earlier = []
    for record in ("run_config.json", "unlearn.json"):
        path = Path(expert_dir) / record
        if path.exists():
            earlier = list(read_json(path).get("concepts", []))
            break
    return earlier + [c for c in add if c not in earlier]


def check_concepts_in_world(concepts: list[str], data_dir: str | os.PathLike) -> None:
    """In the tiny world every concept is a style of the world (fail naming the unknown ones)."""
    world = read_world(data_dir) if (Path(data_dir) / "world.json").exists() else {}
    if world.get("kind") != "tiny":
        return
    styles = world["labels"]["style"]
    unknown = [c for c in concepts if c not in styles]
    if unknown:
        raise BilevelInputError(f"concept(s) {unknown} are not styles of the world in {data_dir} "
                                f"(styles: {', '.join(styles)}); name styles of world.styles")
    if not concepts:
        raise BilevelInputError("no concepts to remove: the setting's concept list is empty")


def concept_images(data_dir: str | os.PathLike, concepts: list[str], anchor: str):
    """The world's training images of the concepts (the authors' style image set), with each
    caption and the same caption naming the anchor instead of the style word."""
    table = read_table(data_dir, "train")
    if "style" not in table.columns:
        raise BilevelInputError(f"bilevel.upper.x_t 'images' needs labelled images of each concept ({data_dir}/train.csv "
                                "with a style column, the tiny world); use x_t: sample at this scale")
    table = table[table["style"].isin(concepts)].reset_index(drop=True)
    missing = sorted(set(concepts) - set(table["style"]))
    if missing:
        raise BilevelInputError(f"no training images of {missing} in {data_dir}/train.csv for bilevel.upper.x_t 'images'")
    anchors = [caption.replace(word, anchor, 1) for caption, word in zip(table["caption"], table["style_word"])]
    return table, anchors


def upper_context(pipe: StableDiffusionPipeline, teacher: nn.Module, concepts: ConceptSet, esd: dict, upper: dict,
                  data_dir: str | os.PathLike, seed: int, uce: dict | None = None) -> UpperContext:
    """The upper level's frozen target model, target mode and batches.

    `esd`: the ESD settings (`unlearn.esd`, resolved for the setting, `bilevel.upper.target` may
    override the target mode); `upper`: `bilevel.upper` (x_t source, target model, batch size).
    The target comes from the unpruned teacher (paper Eq. 6 uses f_T) or from a frozen copy of
    the model at the start (`target_model: initial`, as two-stage ESD does). `uce`: the
    `unlearn.uce` section, which method `uce` edits with (the same edit as two-stage UCE)."""
    target = upper.get("target") or esd["target"]
    frozen = teacher if upper["target_model"] == "teacher" else copy.deepcopy(pipe.unet).requires_grad_(False).eval()
    edit = None
    if upper["method"] == "uce":
        if uce is None:
            raise BilevelInputError("bilevel.upper.method 'uce' needs the unlearn.uce section (lam, erase_scale, ...)")
        edit = uce_edit(pipe, concepts, uce)
    if upper["x_t"] == "sample":
        pool = prompt_pool(pipe, esd_prompts(concepts, esd["prompts"], esd["anchor"]), target)
        batches = ConceptPrompts(pool, latent_shape(pipe), esd["sample_steps"], seed)
        return UpperContext(frozen, target, esd["eta"], batches, PartialSampler(pipe, esd["sample_steps"], esd["guidance"]),
                            edit)
    table, anchors = concept_images(data_dir, list(concepts.erase), esd["anchor"])
    mean, std = encode_latents(pipe, load_images_at(data_dir, table, pipeline_resolution(pipe)))
    captions = table["caption"].tolist()
    references = anchors if target != "empty" else [""] * len(captions)
    vocab = sorted(set(captions) | set(references))
    embedded = dict(zip(vocab, encode_captions(pipe, vocab)))
    batches = NoisedConceptImages(DDPMScheduler.from_config(pipe.scheduler.config), mean, std,
                                  pipe.vae.config.scaling_factor, torch.stack([embedded[c] for c in captions]),
                                  torch.stack([embedded[r] for r in references]), seed)
    return UpperContext(frozen, target, esd["eta"], batches, edit=edit)
