"""Fig. 7: per-label counts (NudeNet values; tiny judge's predicted-style shares) and their
decrease relative to the teacher, by hand, per seed and over seeds."""

from __future__ import annotations

import pytest
from report_fixtures import write_score

from pruneforget.io import read_json
from pruneforget.report.build import build_figure
from pruneforget.report.labels import label_counts, label_decrease_table


def judge(per_style: dict) -> dict:
    return {"metric": "judge", "value": {}, "per_item": [
        {"style": s, "n": n, "style_acc": 0.0, "predicted_style": shares} for s, (n, shares) in per_style.items()]}


def test_judge_label_counts_add_predicted_shares_over_prompted_styles():
    score = judge({"stripes": (4, {"stripes": 0.75, "plain": 0.25}), "dots": (2, {"dots": 0.5, "plain": 0.5})})
    assert label_counts(score) == {"dots": 1.0, "plain": 2.0, "stripes": 3.0}
    assert label_counts({"metric": "nudenet", "value": {"FEET_EXPOSED": 3, "BELLY_EXPOSED": 0}}) == \
        {"FEET_EXPOSED": 3.0, "BELLY_EXPOSED": 0.0}


def test_label_decrease_against_the_teacher_by_hand(tmp_path):
    teacher = {"FEET_EXPOSED": 10, "BELLY_EXPOSED": 4, "ANUS_EXPOSED": 0}
    method = [{"FEET_EXPOSED": 5, "BELLY_EXPOSED": 1, "ANUS_EXPOSED": 0},   # seed 0: 50 %, 75 %
              {"FEET_EXPOSED": 2, "BELLY_EXPOSED": 5, "ANUS_EXPOSED": 1}]   # seed 1: 80 %, -25 %
    scores = {"base": [{"metric": "nudenet", "value": teacher}]}
    scores |= {f"esdu-global-s{s}": [{"metric": "nudenet", "value": v}] for s, v in enumerate(method)}
    rows = [{"label": "ESD", "model": "esdu-global"}, {"label": "UCE", "model": "uce-global"}]
    frame = label_decrease_table(scores, rows, "base", ["FEET_EXPOSED", "BELLY_EXPOSED", "ANUS_EXPOSED"], [0, 1])
    feet = frame[(frame.row == "ESD") & (frame.label == "FEET_EXPOSED")].iloc[0]
    belly = frame[(frame.row == "ESD") & (frame.label == "BELLY_EXPOSED")].iloc[0]
    assert (feet["mean"], feet["n"]) == (pytest.approx(65.0), 2)
    assert belly["mean"] == pytest.approx(25.0) and belly["std"] == pytest.approx(70.71067811865476)
    # The teacher never shows ANUS_EXPOSED: no relative decrease exists, so a note, no number.
    assert frame[(frame.label == "ANUS_EXPOSED")].empty
    notes = set(frame.loc[frame.note != "", "note"])
    assert notes == {"not built: uce-global-s0", "not built: uce-global-s1",
                     "undefined: base shows no ANUS_EXPOSED (no relative decrease)"}


def test_fig7_from_judge_score_files(tmp_path):
    paths = [write_score(tmp_path, "base", "val", "judge", {"style_acc": 1.0},
                         per_item=[{"style": "stripes", "n": 4, "predicted_style": {"stripes": 1.0}},
                                   {"style": "dots", "n": 4, "predicted_style": {"dots": 1.0}}]),
             write_score(tmp_path, "bilevel-global-s0", "val", "judge", {"style_acc": 0.5},
                         per_item=[{"style": "stripes", "n": 4, "predicted_style": {"plain": 0.75, "stripes": 0.25}},
                                   {"style": "dots", "n": 4, "predicted_style": {"dots": 1.0}}])]
    assert read_json(paths[0])["metric"] == "judge"
    spec = {"figure": "fig7", "kind": "label_decrease", "title": "t", "seeds": [0], "reference": "base",
            "metric": "judge", "promptsets": ["val"], "labels": None, "rows": [{"label": "bilevel", "model": "bilevel-global"}]}
    fig, frame = build_figure(spec, scores=paths)
    cells = frame[frame.note == ""].set_index("label")["mean"].to_dict()
    assert cells == {"dots": 0.0, "stripes": 75.0}
    assert set(frame.loc[frame.note != "", "note"]) == {"undefined: base shows no plain (no relative decrease)"}
