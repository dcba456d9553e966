"""Frontiers (report/frontier.py): the Pareto front and the operating-point rule on hand examples,
and fig_frontier / table1_front drawn from fake score files as the config resolves them: every
point's mean ± std over seeds, the front marked, the chosen knob value named, a curve with no
point meeting the rule listed with a note."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml
from report_fixtures import write_score

from pruneforget.report.build import build_figure
from pruneforget.report.frontier import operating_point, pareto_front
from pruneforget.report.save import save_figure
from pruneforget.report.specs import figure_inputs, resolve_figure
from test_config import ROOT


def test_pareto_front_of_a_hand_example():
    # (erasure, retention): d is beaten by b in both; e ties c in erasure and is worse in retention.
    erasure = [10, 50, 90, 40, 90, math.nan]
    retention = [99, 95, 60, 90, 50, 100]
    assert pareto_front(erasure, retention) == [True, True, True, False, False, False]
    # Retention lower-better (an error): now the lowest error wins that axis.
    assert pareto_front([10, 50, 90], [5.0, 1.0, 9.0], "higher", "lower") == [False, True, True]
    # Two identical points do not dominate each other.
    assert pareto_front([1, 1], [1, 1]) == [True, True]


def test_operating_point_rule_on_a_hand_example():
    values = [25, 50, 100, 200]
    erasure = [40.0, 96.0, 99.0, 100.0]
    error = [0.10, 0.12, 0.11, 0.20]
    # Least error among points with erasure >= 95: 100 (0.11), not 25 (0.10, erases too little).
    assert operating_point(values, erasure, error, 95, "higher", "lower") == 100
    # Higher-better retention: the most retained among those reaching the threshold.
    assert operating_point(values, erasure, [90, 80, 85, 70], 95, "higher", "higher") == 100
    # A lower-better erasure column (CSD): values at or under the threshold qualify.
    assert operating_point(values, [0.5, 0.3, 0.2, 0.1], error, 0.3, "lower", "lower") == 100
    assert operating_point(values, erasure, error, 100.5) is None
    # Ties on the best column go to the stronger erasure.
    assert operating_point(values, erasure, [0.1, 0.1, 0.1, 0.1], 95, "higher", "lower") == 200


SEEDS = [0, 1]
# style accuracy on the synonym sets per (model stem, seed); the tiny config's axes read
# judge on synonyms_* (erasure), judge on retain (IRA, CRA), frechet_evaluator and
# denoising_error on val. The Frechet distance is written as 100 x the denoising error.
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _config(curves: list[dict]) -> dict:
    config = {**CONFIG, "figures": {**CONFIG["figures"], "seeds": SEEDS},
              "frontier": {**CONFIG["frontier"], "curves": curves}}
    return config


CURVES = [
    {"label": "UCE", "run": "uce-artists", "knob": "erase", "values": [0.5, 2]},
    {"label": "bilevel", "run": "bilevel-artists-esdx", "knob": "K", "values": [1, 10]},
]
# (style acc on synonyms, retain style acc, denoising error) per (model, seed)
NUMBERS = {
    ("uce-artists-erase0.5", 0): (0.50, 0.9, 0.10), ("uce-artists-erase0.5", 1): (0.30, 0.9, 0.12),
    ("uce-artists-erase2", 0): (0.02, 0.7, 0.20), ("uce-artists-erase2", 1): (0.04, 0.8, 0.22),
    ("bilevel-artists-esdx-K1", 0): (0.00, 0.8, 0.11), ("bilevel-artists-esdx-K1", 1): (0.02, 0.8, 0.13),
    ("bilevel-artists-esdx-K10", 0): (0.60, 0.9, 0.09), ("bilevel-artists-esdx-K10", 1): (0.40, 0.9, 0.09),
    ("ft-80-kd-pruned", 0): (0.9, 0.95, 0.08), ("ft-80-kd-pruned", 1): (0.9, 0.95, 0.08),
}


def write_frontier_scores(root, spec) -> list:
    paths = []
    for (stem, seed), (syn, retain, error) in NUMBERS.items():
        model = f"{stem}-s{seed}"
        for p in [p for p in spec["erasure"]["promptsets"]]:
            paths.append(write_score(root, model, p, "judge", {"style_acc": syn, "shape_acc": 1.0}))
        paths.append(write_score(root, model, "retain", "judge", {"style_acc": retain, "shape_acc": 1.0}))
        paths.append(write_score(root, model, "val", "denoising_error", error))
        paths.append(write_score(root, model, "val", "frechet_evaluator", 100 * error))
    # The teacher: erases nothing.
    for p in spec["erasure"]["promptsets"]:
        paths.append(write_score(root, "base", p, "judge", {"style_acc": 1.0, "shape_acc": 1.0}))
    paths.append(write_score(root, "base", "retain", "judge", {"style_acc": 1.0, "shape_acc": 1.0}))
    paths.append(write_score(root, "base", "val", "denoising_error", 0.07))
    paths.append(write_score(root, "base", "val", "frechet_evaluator", 7.0))
    return paths


def test_every_point_and_reference_is_an_input_of_the_figure():
    spec = resolve_figure(_config(CURVES), "fig_frontier")
    scores = figure_inputs(spec, "tiny")["scores"]
    assert "results/tiny/scores/uce-artists-erase0.5-s1/retain/judge.json" in scores
    assert "results/tiny/scores/bilevel-artists-esdx-K10-s0/val/denoising_error.json" in scores
    assert "results/tiny/scores/base/val/denoising_error.json" in scores
    assert not any("-s2/" in s for s in scores)


def test_the_frontier_figure_from_fake_scores(tmp_path):
    spec = resolve_figure(_config(CURVES), "fig_frontier")
    fig, points = build_figure(spec, scores=write_frontier_scores(tmp_path, spec))
    save_figure(fig, tmp_path / "figures/fig_frontier.pdf", points)
    for suffix in ("pdf", "png", "csv"):
        assert (tmp_path / f"figures/fig_frontier.{suffix}").exists()
    ira = points[points["panel"] == "IRA"].set_index("model")
    # UCE at erase 2: UA synonyms = 100 * (1 - acc), mean over seeds 98 ± 1.41; IRA 75 ± 7.07
    assert ira.loc["uce-artists-erase2", "erasure_mean"] == pytest.approx(97.0)
    assert ira.loc["uce-artists-erase2", "erasure_std"] == pytest.approx(math.sqrt(2))
    assert ira.loc["uce-artists-erase2", "retention_mean"] == pytest.approx(75.0)
    assert ira.loc["uce-artists-erase2", "n"] == 2
    # IRA panel (erasure, IRA): bilevel K1 (99, 80) beats UCE erase 2 (97, 75); bilevel K10 (50, 90)
    # erases less than UCE erase 0.5 (60, 90) at the same IRA. The front: K1 and UCE erase 0.5.
    front = set(ira.index[ira["front"].astype(bool)])
    assert front == {"bilevel-artists-esdx-K1", "uce-artists-erase0.5"}
    assert ira.loc["base", "kind"] == "reference" and not ira.loc["base", "front"]
    # The distilled model was given scores for its seeds; the figure's reference reads them.
    assert ira.loc["ft-80-kd-pruned", "erasure_mean"] == pytest.approx(10.0)


def test_table1_front_names_the_chosen_value_and_notes_a_curve_that_meets_no_rule(tmp_path):
    curves = [*CURVES, {"label": "ConceptPrune", "run": "conceptprune-artists", "knob": "skill", "values": [0.1]}]
    spec = resolve_figure(_config(curves), "table1_front")
    paths = write_frontier_scores(tmp_path, spec)
    # ConceptPrune's only point erases 50%: below the rule's 95.
    for seed in SEEDS:
        model = f"conceptprune-artists-skill0.1-s{seed}"
        for p in spec["erasure"]["promptsets"]:
            paths.append(write_score(tmp_path, model, p, "judge", {"style_acc": 0.5, "shape_acc": 1.0}))
        paths.append(write_score(tmp_path, model, "retain", "judge", {"style_acc": 0.9, "shape_acc": 1.0}))
        paths.append(write_score(tmp_path, model, "val", "denoising_error", 0.05))
        paths.append(write_score(tmp_path, model, "val", "frechet_evaluator", 5.0))
    fig, table = build_figure(spec, scores=paths)
    save_figure(fig, tmp_path / "figures/table1_front.pdf", table)
    csv = pd.read_csv(tmp_path / "figures/table1_front.csv", keep_default_na=False, dtype={"value": str})
    chosen = csv[csv["column"] != ""].groupby("row")[["knob", "value", "model"]].first()
    # Least Frechet distance among points with UA synonyms >= 95: UCE erase 2 (97), bilevel K 1 (99).
    assert chosen.loc["UCE"].tolist() == ["erase", "2", "uce-artists-erase2"]
    assert chosen.loc["bilevel"].tolist() == ["K", "1", "bilevel-artists-esdx-K1"]
    notes = csv[csv["row"] == "ConceptPrune"]
    assert len(notes) == 1 and "no skill value reaches the rule" in notes["note"].item()
    cells = csv[(csv["row"] == "UCE") & (csv["column"] == "denoising error")]
    assert float(cells["mean"].item()) == pytest.approx(0.21)
    cells = csv[(csv["row"] == "UCE") & (csv["column"] == "Frechet (evaluator)")]
    assert float(cells["mean"].item()) == pytest.approx(21.0)
    assert set(csv[csv["row"] == "UCE"]["column"]) == {c["label"] for c in [spec["erasure"], *spec["retention"]]}


def test_a_missing_point_is_a_note_never_a_number(tmp_path):
    spec = resolve_figure(_config(CURVES), "fig_frontier")
    paths = [p for p in write_frontier_scores(tmp_path, spec) if "uce-artists-erase2-s1" not in str(p)]
    _, points = build_figure(spec, scores=paths)
    uce = points[(points["model"] == "uce-artists-erase2") & (points["panel"] == "IRA")]
    assert uce["n"].item() == 1 and uce["erasure_mean"].item() == pytest.approx(98.0)
    assert "not built: uce-artists-erase2-s1" in set(points["note"])


def test_a_curve_centre_is_the_main_run_trained_once():
    """At the value the config already gives a run, the point is that run (Table 1's model), not a
    second run of the same settings; the authors' code's centre is its `bilevel.code` value."""
    spec = resolve_figure(CONFIG, "fig_frontier")
    models = {c["label"]: [p["model"] for p in c["points"]] for c in spec["curves"]}
    steps = CONFIG["unlearn"]["esd"]["steps"]
    assert models["ESD-x"] == [f"esdx-artists-steps{v}" if v != steps else "esdx-artists"
                               for v in spec["curves"][0]["values"]]
    code_k = CONFIG["bilevel"]["code"]["k"]
    assert code_k != CONFIG["bilevel"]["k"]  # else this check could not tell the two apart
    code = next(c for c in spec["curves"] if c["run"].startswith("bilevelcode-"))
    assert [p["model"] for p in code["points"] if "-K" not in p["model"]] == ["bilevelcode-artists"]
    assert next(p["value"] for p in code["points"] if p["model"] == "bilevelcode-artists") == code_k


def test_each_point_carries_its_training_time_and_the_figure_its_total(tmp_path):
    """Every curve point's wall time (cost.json's loops added up; unlearn.json's seconds for an
    edit without a loop), mean over seeds, in the CSV; the notes state the figure's total compute."""
    from report_fixtures import write_run

    from pruneforget.io import write_json

    spec = resolve_figure(_config(CURVES), "fig_frontier")
    runs = figure_inputs(spec, "tiny")["runs"]
    assert "results/tiny/bilevel-artists-esdx-K10-s1" in runs and "results/tiny/uce-artists-erase2-s0" in runs
    dirs = []
    for seed, (lower, upper) in enumerate([(100.0, 20.0), (110.0, 30.0)]):
        for k in (1, 10):
            dirs.append(write_run(tmp_path, f"bilevel-artists-esdx-K{k}-s{seed}", cost={"objectives": {
                "lower": {"steps": 10, "seconds_total": lower, "seconds_per_step": lower / 10, "peak_memory_bytes": 1},
                "upper": {"steps": 2, "seconds_total": upper, "seconds_per_step": upper / 2, "peak_memory_bytes": 1}}}))
        for erase in ("0.5", "2"):
            run = tmp_path / f"results/tiny/uce-artists-erase{erase}-s{seed}"
            run.mkdir(parents=True)
            write_json(run / "unlearn.json", {"seconds": 2.0 + seed})
            dirs.append(run)
    _, points = build_figure(spec, scores=write_frontier_scores(tmp_path, spec), runs=dirs)
    ira = points[points["panel"] == "IRA"].set_index("model")
    assert ira.loc["bilevel-artists-esdx-K1", "train_seconds_mean"] == pytest.approx(130.0)  # (120 + 140) / 2
    assert ira.loc["uce-artists-erase2", "train_seconds_mean"] == pytest.approx(2.5)
    assert math.isnan(ira.loc["base", "train_seconds_mean"])  # a reference mark is not the figure's compute
    total = 2 * (120 + 140) + 2 * (2 + 3)
    assert any(f"8 runs, {total / 3600:.2f} h ({total} s" in n for n in points["note"]), list(points["note"])
