"""ESD as a two-stage baseline (PAPER_FACTS section 3): fine-tune the distilled model so that its
prediction for a concept prompt follows negative guidance away from the concept.

Methods of the `unlearn` command: `esdx` (cross-attention only, the paper's choice for artists),
`esdu` (everything but cross-attention, the paper's choice for nudity; `noxattn_form` picks ESD's
CompVis set or the authors' port's, unlearn/esd_step.py), `esdall` (every parameter, the bilevel
upper level's default subset, run two-stage), `esdadv` (every parameter at the worst-case concept
embedding: the `esd-adversarial` upper level run two-stage, `adversarial_steps` and
`adversarial_epsilon`) and `esd` (the subset the config gives the setting:
`unlearn.esd.subset.<setting>`). All read `unlearn.esd`.

Each step (the training loop's objective "esd"): a concept (uniformly), one of its prompts c,
x_t by partially sampling c with the model being trained (DDIM, `sample_steps` steps, CFG
`guidance`, stopping at a random step), the target from a frozen copy of the model as it was
before unlearning (`target`: empty / anchor_guidance / anchor, see unlearn/esd_step.py), Adam
(paper: lr 1e-5, 1,000 iterations, eta 1, batch 1).

Prompts (`prompts`): `name` trains on the concept's name alone (ESD as published: "Van Gogh");
`pairs` on the setting's prompt pairs (`unlearn.<setting>.prompt_pairs`, shared with
ConceptPrune): c is each target prompt ("a red circle in the style of stripes") and its anchor c'
the same prompt with the concept replaced by `anchor` ("... in the style of plain"); for a pair
group that does not name a concept (nudity: "a photo of a naked man") the anchor is its base
prompt ("a photo of a man").
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from torch import Tensor

from pruneforget.models.diffusion import encode_captions
from pruneforget.train.loop import make_accelerator, train
from pruneforget.train.objective import LoopSettings, Objective, constant_schedule
from pruneforget.unlearn import Unlearned
from pruneforget.unlearn.concepts import ConceptSet, UnlearnInputError, validate_concepts
from pruneforget.unlearn.esd_step import NOXATTN_FORMS, SUBSETS, TARGETS
from pruneforget.unlearn.upper import UpperContext, build_upper
from pruneforget.unlearn.xt import ConceptPrompts, PartialSampler, PromptPool

SECTION = "esd"  # every ESD method reads unlearn.esd
METHOD_SUBSETS = {"esdx": "xattn", "esdu": "noxattn", "esdall": "full", "esdadv": "full"}  # `esd`: the setting's from config
SUBSET_UPPER = {"xattn": "esdx", "noxattn": "esdu", "full": "esdall"}  # unlearn/upper.py registry names
METHOD_UPPER = {"esdadv": "esd-adversarial"}  # methods whose step is not plain ESD on their subset
PROMPT_SOURCES = ("name", "pairs")
PARAMS = ("target", "eta", "lr", "steps", "batch_size", "sample_steps", "guidance", "anchor", "subset", "noxattn_form",
          "prompts", "adversarial_steps", "adversarial_epsilon", "log_every")


def method_params(section: dict, method: str, setting: str) -> dict:
    """The parameters of one ESD run: `unlearn.esd` with `subset` and `prompts` resolved for the
    method and the setting (the per-setting maps become single values)."""
    params = dict(section)
    for key in ("subset", "prompts"):
        value = params.get(key)
        if isinstance(value, dict):
            if setting not in value:
                raise UnlearnInputError(f"unlearn.esd.{key} has no entry for setting {setting!r} (has {sorted(value)})")
            params[key] = value[setting]
    if method in METHOD_SUBSETS:
        params["subset"] = METHOD_SUBSETS[method]
    params["upper"] = METHOD_UPPER.get(method) or SUBSET_UPPER.get(params.get("subset"))
    return params


def check_params(params: dict) -> None:
    """Fail on a bad (resolved) ESD parameter set before any work, naming the key."""
    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise UnlearnInputError(f"unlearn.esd is missing {missing}; it needs {list(PARAMS)}")
    choices = {"target": TARGETS, "subset": SUBSETS, "noxattn_form": NOXATTN_FORMS, "prompts": PROMPT_SOURCES}
    for key, allowed in choices.items():
        if params[key] not in allowed:
            raise UnlearnInputError(f"unlearn.esd.{key}: {params[key]!r} is not one of {allowed}")
    for key in ("steps", "batch_size", "log_every"):
        if not isinstance(params[key], int) or params[key] < 1:
            raise UnlearnInputError(f"unlearn.esd.{key} must be an integer >= 1, got {params[key]!r}")
    if not isinstance(params["sample_steps"], int) or params["sample_steps"] < 2:
        raise UnlearnInputError(f"unlearn.esd.sample_steps must be an integer >= 2 (x_t stops between steps), got {params['sample_steps']!r}")
    if not params["lr"] > 0:
        raise UnlearnInputError(f"unlearn.esd.lr must be > 0, got {params['lr']!r}")


def esd_prompts(concepts: ConceptSet, source: str, anchor: str) -> list[list[tuple[str, str]]]:
    """Per concept (or prompt-pair group), its (concept prompt c, anchor prompt c') pairs."""
    if anchor in concepts.erase:
        raise UnlearnInputError(
            f"anchor {anchor!r} is one of the concepts to erase {list(concepts.erase)}: ESD would steer the concept "
            "towards itself and erase nothing; anchor on a neutral concept (plain in the tiny world)"
        )
    if source == "name":
        return [[(c, anchor)] for c in concepts.erase]
    if source != "pairs":
        raise UnlearnInputError(f"ESD prompts {source!r} is not one of {PROMPT_SOURCES}")
    if not concepts.pairs:
        raise UnlearnInputError("ESD prompts 'pairs' needs the setting's prompt_pairs; none were given")
    groups = []
    for key, pairs in concepts.pairs.items():
        if key in concepts.erase:  # the target names the concept: swap in the anchor
            groups.append([(target, target.replace(key, anchor)) for _, target in pairs])
        else:  # a group that names no concept (nudity): its base prompt is the anchor
            groups.append([(target, base) for base, target in pairs])
    return groups


def prompt_pool(pipe: StableDiffusionPipeline, groups: list[list[tuple[str, str]]], target: str) -> PromptPool:
    """Embeddings of every concept prompt with its reference: the empty prompt for target
    `empty`, its anchor otherwise."""
    prompts = sorted({p for g in groups for pair in g for p in pair} | {""})
    embedded = dict(zip(prompts, encode_captions(pipe, prompts)))
    ref = (lambda pair: "") if target == "empty" else (lambda pair: pair[1])
    return PromptPool(
        cond=[torch.stack([embedded[c] for c, _ in g]) for g in groups],
        reference=[torch.stack([embedded[ref(pair)] for pair in g]) for g in groups],
        uncond=embedded[""],
    )


def latent_shape(pipe: StableDiffusionPipeline) -> tuple[int, int, int]:
    size = pipe.unet.config.sample_size
    return (pipe.unet.config.in_channels, size, size)


def unlearn(pipe: StableDiffusionPipeline, concepts: ConceptSet, params: dict, *, seed: int = 0,
            work_dir: str | Path | None = None) -> Unlearned:
    """Run ESD on `pipe` (in place) for `params['steps']` steps; `params` as `method_params` gives
    them. Writes metrics.csv and cost.json into `work_dir`."""
    check_params(params)
    validate_concepts(pipe, concepts)
    if work_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return unlearn(pipe, concepts, params, seed=seed, work_dir=tmp)
    settings = LoopSettings(steps=params["steps"], micro_batch_size=params["batch_size"], log_every=params["log_every"])
    accelerator = make_accelerator(settings.mixed_precision, Path(work_dir))
    pipe.to(accelerator.device)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    unet = pipe.unet
    frozen = copy.deepcopy(unet).requires_grad_(False).eval()  # the model before unlearning gives the targets

    pool = prompt_pool(pipe, esd_prompts(concepts, params["prompts"], params["anchor"]), params["target"])
    batches = ConceptPrompts(pool, latent_shape(pipe), params["sample_steps"], seed)
    ctx = UpperContext(frozen, params["target"], params["eta"], batches,
                       PartialSampler(pipe, params["sample_steps"], params["guidance"]))
    upper = build_upper(params.get("upper") or SUBSET_UPPER[params["subset"]], unet, ctx, params)
    # Only the subset needs gradients: the rest stays frozen (and its backward is skipped).
    unet.requires_grad_(False)
    for p in upper.params.values():
        p.requires_grad_(True)

    def loss(models, batch) -> dict[str, Tensor]:
        value = upper.loss(models["unet"], batch)
        return {"esd": value, "total": value}

    objective = Objective(name="esd", params=list(upper.params.values()), loss=loss, batches=batches, lr=params["lr"],
                          lr_schedule="constant", terms=("esd", "total"), grad_masks=upper.grad_masks)
    fingerprint = {"method": "esd", "subset": params["subset"], "noxattn_form": params["noxattn_form"],
                   "target": params["target"], "seed": seed, "upper": upper.settings}
    cost = train([objective], constant_schedule("esd"), {"unet": unet}, settings, Path(work_dir),
                 accelerator=accelerator, fingerprint=fingerprint)
    unet.requires_grad_(True)
    stats = {
        "subset": params["subset"],
        "noxattn_form": params["noxattn_form"],
        "target": params["target"],
        "trained_parameters": int(sum(p.numel() for p in upper.params.values())),
        "prompts": sum(len(c) for c in pool.cond),
        "seconds_per_step": cost["objectives"]["esd"]["seconds_per_step"],
    }
    return Unlearned(pipe, stats)
