"""The tiny world's unlearning judges on hand-made predictions: UA, IRA, CRA, CP with the
evaluator's target-style probability, and the pairing of two sample sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pruneforget.metrics import unlearning as U
from pruneforget.metrics.sample_set import SampleSet, SampleSetError, pair_sample_sets

STYLES = ["plain", "stripes", "dots", "waves"]


def test_ua_counts_samples_not_seen_in_the_removed_style():
    target = ["stripes"] * 4 + ["dots"] * 4
    predicted = ["stripes", "plain", "plain", "waves", "dots", "dots", "dots", "plain"]
    # stripes: 3 of 4 moved away; dots: 1 of 4 -> overall 4 / 8
    assert U.unlearning_accuracy(predicted, target) == pytest.approx(0.5)
    assert U.unlearning_accuracy_per_style(predicted, target) == {"dots": 0.25, "stripes": 0.75}
    assert U.unlearning_accuracy(target, target) == 0.0  # nothing erased
    assert U.unlearning_accuracy(["plain"] * 8, target) == 1.0


def test_ira_and_cra_count_what_survives_on_retain_prompts():
    style = ["plain", "plain", "waves", "waves", "dots"]
    assert U.in_domain_retain_accuracy(["plain", "dots", "waves", "waves", "dots"], style) == pytest.approx(0.8)
    cra = U.cross_domain_retain_accuracy(
        ["circle", "square", "circle", "circle"], ["circle", "circle", "circle", "circle"],  # 3 / 4
        ["red", "red", "blue", "blue"], ["red", "blue", "blue", "red"],  # 2 / 4
    )
    assert cra == {"shape": 0.75, "colour": 0.5, "mean": 0.625}


def test_judges_refuse_misaligned_or_empty_inputs():
    with pytest.raises(ValueError, match="UA"):
        U.unlearning_accuracy(["plain"], ["plain", "dots"])
    with pytest.raises(ValueError, match="zero samples"):
        U.in_domain_retain_accuracy([], [])


def test_target_probability_picks_each_rows_target_column():
    probs = np.array([[0.1, 0.6, 0.2, 0.1],
                      [0.7, 0.1, 0.1, 0.1],
                      [0.25, 0.25, 0.25, 0.25]])
    p = U.target_probability(probs, STYLES, ["stripes", "stripes", "waves"])
    np.testing.assert_allclose(p, [0.6, 0.1, 0.25])
    with pytest.raises(ValueError, match="unknown to the evaluator"):
        U.target_probability(probs, STYLES, ["stripes", "cubism", "waves"])
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        U.target_probability(probs, STYLES, ["stripes", "dots"])


def test_cp_evaluator_counts_pairs_where_the_unlearned_model_lowered_the_target_probability():
    p_unlearned = np.array([0.1, 0.9, 0.3, 0.5])
    p_reference = np.array([0.8, 0.9, 0.2, 0.6])
    # lower in pairs 0 and 3; pair 1 ties (not counted), pair 2 rose
    assert U.cp_evaluator(p_unlearned, p_reference) == 0.5
    assert U.cp_evaluator(p_reference, p_reference) == 0.0  # the reference against itself


def test_frechet_evaluator_is_zero_for_identical_features_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(64, 3))
    assert U.frechet_evaluator(x, x) == pytest.approx(0.0, abs=1e-6)
    assert U.frechet_evaluator(x + 2.0, x) == pytest.approx(12.0, rel=1e-6)  # ||shift||^2 = 3 * 4


def _set(root: str, rows: list[tuple[int, int, str, int]]) -> SampleSet:
    m = pd.DataFrame(rows, columns=["prompt_index", "seed_index", "prompt", "seed"])
    m.insert(0, "file", [f"{i:05d}.png" for i in range(len(m))])
    return SampleSet(Path(root), m)


def test_pairing_follows_prompt_and_seed_not_row_order():
    a = _set("a", [(0, 0, "p0", 10), (0, 1, "p0", 11), (1, 0, "p1", 20)])
    b = _set("b", [(1, 0, "p1", 20), (0, 1, "p0", 11), (0, 0, "p0", 10)])
    assert pair_sample_sets(a, b) == ([0, 1, 2], [2, 1, 0])


def test_pairing_refuses_sets_drawn_with_other_seeds():
    a = _set("a", [(0, 0, "p0", 10), (1, 0, "p1", 20)])
    b = _set("b", [(0, 0, "p0", 10), (1, 0, "p1", 21)])
    with pytest.raises(SampleSetError, match="differ in seed"):
        pair_sample_sets(a, b)
    with pytest.raises(SampleSetError, match="has 2 images but .* has 1"):
        pair_sample_sets(a, _set("c", [(0, 0, "p0", 10)]))


def test_judge_pipeline_draws_each_prompt_seeds_per_prompt_times_and_scores_against_its_labels(tiny_pipe):
    from pruneforget.metrics.judge import judge_pipeline

    class AlwaysStripes:  # an evaluator that sees stripes in every image
        labels = {"style": ["plain", "stripes"], "shape": ["circle"], "colour": ["red"]}

        def __init__(self):
            self.seen = 0

        def predict(self, images):
            self.seen += len(images)
            return {"style": ["stripes"] * len(images), "shape": ["circle"] * len(images), "colour": ["red"] * len(images)}

    prompts = pd.DataFrame({"prompt": ["a red circle, stripes style", "a red circle, plain style", "a red circle"],
                            "evaluation_seed": [5, 9, 11], "style": ["stripes", "plain", "plain"],
                            "shape": ["circle"] * 3, "colour": ["red"] * 3})
    evaluator = AlwaysStripes()
    tiny_pipe.set_progress_bar_config(disable=True)
    acc = judge_pipeline(tiny_pipe, evaluator, prompts, seeds_per_prompt=2, guidance=1.0, steps=2)
    assert evaluator.seen == 6
    assert acc == {"style_acc": pytest.approx(1 / 3), "shape_acc": 1.0, "colour_acc": 1.0}
