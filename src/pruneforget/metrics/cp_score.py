"""CP score of the paper (section 4, Table 1): how often unlearning moved an image away from its prompt.

    CP = mean_i 1[ sim(p_i, x_unlearned_i) < sim(p_i, x_reference_i) ]

for prompts p_i, each sampled with the same seed from the unlearned model and from the reference
model (the distilled model of Eq. 8, whose CP against itself is therefore 0). At paper scale
sim is CLIP cosine (`clip_score.clip_scores`); in the tiny world it is the evaluator's
probability of the target style. Higher is better.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

Similarities = Union[np.ndarray, torch.Tensor, Sequence[float]]


def _as_vector(x: Similarities, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    v = np.asarray(x, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-prompt similarities, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains non-finite values")
    return v


def cp_score(sim_unlearned: Similarities, sim_reference: Similarities) -> float:
    """CP = mean_i 1[sim_unlearned_i < sim_reference_i] over prompt-aligned pairs (paper Table 1).

    Strict inequality: a tie (e.g. the reference against itself) does not count as removal.
    """
    u = _as_vector(sim_unlearned, "sim_unlearned")
    r = _as_vector(sim_reference, "sim_reference")
    if len(u) != len(r):
        raise ValueError(f"CP pairs prompts: got {len(u)} unlearned and {len(r)} reference similarities")
    if len(u) == 0:
        raise ValueError("CP of zero prompts is undefined")
    return float(np.mean(u < r))
