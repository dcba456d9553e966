"""ConceptPrune (Chavhan et al., 2024): zero the feed-forward weights that are "skilled" at a concept
(PAPER_FACTS section 3). No training loop.

1. Sample every base prompt and every target prompt with the model's own sampling loop (DDIM,
   steps and guidance from config, the same initial noise for every prompt) while a hook on the
   input X of every GEGLU feed-forward's output layer `ff.net.2` accumulates, per (denoising
   step t, layer), the column L2 norms of X with its rows L2-normalised. Rows are every token of
   every image of the batch, both classifier-free-guidance halves included, as in the published
   code (ruchikachavhan/concept-prune, neuron_receivers/wanda_receiver.py).
2. Per (t, layer): score S_ij = |W_ij| * ||X_j|| (`wanda_scores`); a weight is skilled if it is in
   its row's top k = floor(skill_ratio * in_features) target-prompt scores AND its target score
   beats its base-prompt score (`skilled_weights`).
3. A weight is pruned if it is skilled at more than select_ratio * T steps (0: the union over
   steps, the paper's rule; `union_over_steps`); several concepts (prompt-pair groups) are found
   separately and their masks united (the published multi-concept union).
4. The pruned weights are set to zero (`apply_masks`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.models.activations import GEGLU
from diffusers.models.attention import FeedForward
from tqdm.auto import tqdm

from pruneforget.models.load import with_scheduler
from pruneforget.unlearn import Unlearned
from pruneforget.unlearn.concepts import ConceptSet, UnlearnInputError, validate_concepts

PARAMS = ("skill_ratio", "select_ratio", "scheduler", "steps", "guidance", "batch_size")


def check_params(params: dict) -> None:
    """Fail on a bad `unlearn.conceptprune` section before any work."""
    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise UnlearnInputError(f"unlearn.conceptprune is missing {missing}; it needs {list(PARAMS)}")
    if not 0 < params["skill_ratio"] <= 1:
        raise UnlearnInputError(f"unlearn.conceptprune.skill_ratio must be in (0, 1], got {params['skill_ratio']!r}")


def geglu_outputs(unet: UNet2DConditionModel) -> dict[str, torch.nn.Linear]:
    """The output layer `ff.net.2` of every GEGLU feed-forward of the UNet, by module name."""
    layers = {
        f"{name}.net.2": module.net[2]
        for name, module in unet.named_modules()
        if isinstance(module, FeedForward) and isinstance(module.net[0], GEGLU)
    }
    if not layers:
        raise UnlearnInputError(
            f"the model's UNet ({type(unet).__name__}) has no GEGLU feed-forward layers (transformer blocks' "
            "`ff`), so ConceptPrune has no weights to prune; use a Stable-Diffusion-shaped UNet2DConditionModel"
        )
    return layers


def skill_k(in_features: int, skill_ratio: float) -> int:
    """k of the row-wise top-k: floor(skill_ratio * in_features), as the published code's int(),
    and at least 1. The published rule selects nothing in a layer narrower than 1 / skill_ratio
    inputs; SD 2.1's feed-forwards (>= 1280 inputs) never are at the paper's ratios, so there the
    two agree, while a learned tiny expert may slice a layer down to 32 inputs."""
    return max(1, int(skill_ratio * in_features))


def wanda_scores(weight: torch.Tensor, column_norms: torch.Tensor) -> torch.Tensor:
    """ConceptPrune's score S_ij = |W_ij| * ||X_j|| (the Wanda score); weight (out, in), norms (in,)."""
    return weight.abs() * column_norms


def skilled_weights(weight: torch.Tensor, norms_target: torch.Tensor, norms_base: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the weights skilled at one step: in their row's top-k target scores and with
    a target score strictly above the base score."""
    s_target = wanda_scores(weight, norms_target)
    s_base = wanda_scores(weight, norms_base)
    top = torch.zeros_like(s_target, dtype=torch.bool)
    if k > 0:
        top.scatter_(1, s_target.topk(k, dim=1).indices, True)
    return top & (s_target > s_base)


def union_over_steps(weight: torch.Tensor, norms_target: torch.Tensor, norms_base: torch.Tensor, k: int,
                     select_ratio: float = 0.0) -> torch.Tensor:
    """Weights skilled at more than select_ratio * T of the T steps (norms: (T, in)); 0 = the union."""
    count = torch.zeros(weight.shape, dtype=torch.int32, device=weight.device)
    for t in range(norms_target.shape[0]):
        count += skilled_weights(weight, norms_target[t], norms_base[t], k)
    return count > select_ratio * norms_target.shape[0]


def concept_masks(weights: dict[str, torch.Tensor], base: dict[str, torch.Tensor], targets: dict[str, dict[str, torch.Tensor]],
                  skill_ratio: float, select_ratio: float = 0.0) -> dict[str, torch.Tensor]:
    """Per layer, the union over concept groups of `union_over_steps` (norms per layer: (T, in))."""
    masks = {}
    for name, w in weights.items():
        k = skill_k(w.shape[1], skill_ratio)
        w = w.float()
        masks[name] = torch.zeros(w.shape, dtype=torch.bool, device=w.device)
        for target in targets.values():
            masks[name] |= union_over_steps(w, target[name].to(w), base[name].to(w), k, select_ratio)
    return masks


@torch.no_grad()
def apply_masks(layers: dict[str, torch.nn.Linear], masks: dict[str, torch.Tensor]) -> int:
    """Zero the masked weights in place; return how many were zeroed."""
    for name, layer in layers.items():
        layer.weight[masks[name].to(layer.weight.device)] = 0
    return int(sum(int(m.sum()) for m in masks.values()))


class _NormRecorder:
    """Hooks accumulating, per (UNet call, layer), the sum over rows of squared row-normalised inputs
    of every `ff.net.2`; one UNet call is one denoising step (the pipeline batches both CFG halves)."""

    def __init__(self, unet: UNet2DConditionModel, layers: dict[str, torch.nn.Linear]):
        self.step = -1
        self.sums: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        self.handles = [unet.register_forward_pre_hook(self._next_step)]
        self.handles += [layer.register_forward_pre_hook(self._recorder(name)) for name, layer in layers.items()]

    def _next_step(self, module, args):
        self.step += 1

    def _recorder(self, name: str):
        def hook(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            sq = F.normalize(x, dim=1).square().sum(dim=0).double()
            sums = self.sums[name]
            if self.step == len(sums):
                sums.append(sq)
            else:
                sums[self.step] += sq

        return hook

    def column_norms(self) -> dict[str, torch.Tensor]:
        return {name: torch.stack(s).sqrt() for name, s in self.sums.items()}

    def remove(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def collect_norms(pipe: StableDiffusionPipeline, prompts: list[str], params: dict, seed: int) -> dict[str, torch.Tensor]:
    """Column norms (T, in_features) of the row-normalised `ff.net.2` inputs per layer, accumulated
    over `prompts` sampled with `params` (scheduler, steps, guidance, batch_size). Every prompt
    starts from the same noise (seeded CPU generator), as in the published code."""
    layers = geglu_outputs(pipe.unet)
    size = pipe.unet.config.sample_size
    noise = torch.randn((1, pipe.unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(seed))
    original = pipe.scheduler
    with_scheduler(pipe, params["scheduler"])
    recorder = _NormRecorder(pipe.unet, layers)
    device = pipe.unet.device
    # Sampling only gathers statistics: fp16 autocast on a GPU (as the published code's fp16 model)
    # keeps the weights, and so the saved model, in their own precision.
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda")
    try:
        batch = params["batch_size"]
        for start in tqdm(range(0, len(prompts), batch), desc="conceptprune activations", unit="batch"):
            chunk = prompts[start : start + batch]
            recorder.step = -1
            with autocast:
                pipe(chunk, num_inference_steps=params["steps"], guidance_scale=params["guidance"],
                     latents=noise.expand(len(chunk), -1, -1, -1).to(device, pipe.unet.dtype), output_type="latent")
    finally:
        recorder.remove()
        pipe.scheduler = original
    return recorder.column_norms()


def unlearn(pipe: StableDiffusionPipeline, concepts: ConceptSet, params: dict, *, seed: int = 0,
            work_dir: Path | None = None) -> Unlearned:
    """Zero the weights of every GEGLU `ff.net.2` that are skilled at the concepts' prompt pairs, in place.

    `concepts.pairs` (group -> (base, target) pairs) drives everything; each group is one concept
    found separately, and identical prompt lists (the base prompts shared by every artist) are
    sampled once. `work_dir` is unused."""
    check_params(params)
    validate_concepts(pipe, concepts)
    if not concepts.pairs:
        raise UnlearnInputError("ConceptPrune needs (base, target) prompt pairs (unlearn.<setting>.prompt_pairs); got none")
    layers = geglu_outputs(pipe.unet)
    cache: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}

    def norms(prompts: tuple[str, ...]) -> dict[str, torch.Tensor]:
        if prompts not in cache:
            cache[prompts] = collect_norms(pipe, list(prompts), params, seed)
        return cache[prompts]

    weights = {name: layer.weight.detach() for name, layer in layers.items()}
    masks: dict[str, torch.Tensor] = {}
    for group, pairs in concepts.pairs.items():
        base = norms(tuple(p[0] for p in pairs))
        target = norms(tuple(p[1] for p in pairs))
        for name, m in concept_masks(weights, base, {group: target}, params["skill_ratio"], params["select_ratio"]).items():
            masks[name] = masks[name] | m if name in masks else m
    zeroed = apply_masks(layers, masks)
    total = sum(l.weight.numel() for l in layers.values())
    steps = next(iter(next(iter(cache.values())).values())).shape[0]
    stats = {
        "zeroed_weights": zeroed,
        "candidate_weights": total,
        "zeroed_fraction": zeroed / total,
        "layers": {name: {"zeroed": int(masks[name].sum()), "k": skill_k(l.in_features, params["skill_ratio"]),
                          "shape": list(l.weight.shape)} for name, l in layers.items()},
        "denoising_steps": steps,
        "groups": {g: len(p) for g, p in concepts.pairs.items()},
        "sampled_prompts": sum(len(p) for p in cache),
    }
    return Unlearned(pipe, stats)
