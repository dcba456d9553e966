"""CP score (paper Table 1) on hand-made similarity pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneforget.metrics.cp_score import cp_score


def test_cp_counts_prompts_where_unlearned_is_less_similar():
    assert cp_score([0.1, 0.5, 0.9], [0.2, 0.4, 0.95]) == pytest.approx(2 / 3)


def test_cp_of_reference_against_itself_is_zero():
    sims = np.array([0.3, 0.7, 0.1])
    assert cp_score(sims, sims) == 0.0  # ties are not removals (the distilled model's 0.0)


def test_cp_accepts_tensors_and_reaches_one():
    assert cp_score(torch.tensor([0.0, 0.1]), torch.tensor([0.5, 0.6])) == 1.0


def test_cp_rejects_length_mismatch_and_empty_input():
    with pytest.raises(ValueError, match="2 unlearned and 3 reference"):
        cp_score([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="zero prompts"):
        cp_score([], [])
    with pytest.raises(ValueError, match="1-D"):
        cp_score(np.zeros((2, 2)), np.zeros((2, 2)))
