"""The experts of an APTP run: what each code keeps (MACs, parameters, prompts routed to it) and
which code becomes the standalone expert of a MAC budget.
"""

from __future__ import annotations

import torch

from pruneforget.models.expert import extract_expert
from pruneforget.prune.macs import MacTable
from pruneforget.prune.router import PromptEncoder, Router


@torch.no_grad()
def route_counts(router: Router, encoder: PromptEncoder, prompts: list[str], batch_size: int = 256) -> list[int]:
    """How many of `prompts` the router (argmax) sends to each code."""
    device = router.codes.device
    counts = torch.zeros(router.config.n_codes, dtype=torch.long)
    unique, multiplicity = _unique_with_counts(prompts)
    for i in range(0, len(unique), batch_size):
        index = router.route(encoder(unique[i : i + batch_size]).to(device)).cpu()
        counts.index_add_(0, index, multiplicity[i : i + batch_size])
    return counts.tolist()


def _unique_with_counts(prompts: list[str]) -> tuple[list[str], torch.Tensor]:
    seen: dict[str, int] = {}
    for p in prompts:
        seen[p] = seen.get(p, 0) + 1
    return list(seen), torch.tensor(list(seen.values()), dtype=torch.long)


@torch.no_grad()
def describe_experts(unet, router: Router, macs: MacTable, width_groups: int, counts: list[int]) -> list[dict]:
    """One record per code: its hard architecture's MAC ratio (of the full UNet), prunable ratio,
    MACs, parameter count of the sliced expert, and the number of training prompts routed to it."""
    experts = []
    for i in range(router.config.n_codes):
        masks = {k: v.cpu() for k, v in router.code_masks(i).items()}
        expert = extract_expert(unet, masks, width_groups)
        experts.append({
            "index": i,
            "mac_ratio": float(macs.ratio(masks)),
            "prunable_ratio": float(macs.prunable_ratio(masks)),
            "macs": int(round(float(macs.macs(masks)))),
            "params": sum(p.numel() for p in expert.parameters()),
            "train_prompts": int(counts[i]),
        })
        del expert
    return experts


def pick_expert(experts: list[dict], target: float, tolerance: float) -> dict:
    """The expert whose MAC ratio is closest to `target`; ValueError naming every ratio found and
    the fix when none lies within `tolerance` of it."""
    if not experts:
        raise ValueError("the APTP run lists no experts (experts.json is empty)")
    best = min(experts, key=lambda e: (abs(e["mac_ratio"] - target), e["index"]))
    if abs(best["mac_ratio"] - target) > tolerance:
        found = ", ".join(f"code {e['index']}: {e['mac_ratio']:.3f}" for e in experts)
        raise ValueError(
            f"no expert within {tolerance} of the target MAC ratio {target} (found {found}); "
            f"retrain APTP with budget {target} (prune-aptp --budget {target}), train longer, or widen the tolerance"
        )
    return best
