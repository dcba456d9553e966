"""Tables 1-3: mean ± std over training seeds as computed by hand, missing models as notes (never
numbers), the resilience formula, and byte-identical rebuilds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import write_score

from pruneforget.report.build import build_figure
from pruneforget.report.save import save_figure
from pruneforget.report.scores import parse_model, tidy_scores
from pruneforget.report.tables import metric_table, resilience, resilience_table

ROWS = [{"label": "teacher", "model": "base"}, {"label": "distilled", "model": "ft-80-kd-pruned"},
        {"label": "bilevel", "model": "bilevel-artists"}]
UA = {"label": "UA", "metric": "judge", "key": "style_acc", "transform": "complement", "scale": 100,
      "better": "higher", "promptsets": ["remove_a", "remove_b"]}
FRECHET = {"label": "Frechet", "metric": "frechet", "better": "lower", "promptsets": ["val"]}
SPEC = {"figure": "table1", "kind": "metric_table", "title": "test table", "seeds": [0, 1, 2], "rows": ROWS,
        "columns": [UA, FRECHET]}

# style accuracy per (model, seed, prompt set); frechet per (model, seed)
STYLE = {("bilevel-artists", 0): (0.2, 0.4), ("bilevel-artists", 1): (0.4, 0.4), ("bilevel-artists", 2): (0.9, 0.7),
         ("ft-80-kd-pruned", 0): (1.0, 0.8), ("ft-80-kd-pruned", 1): (0.9, 0.9), ("ft-80-kd-pruned", 2): (0.8, 1.0)}
FRECH = {("bilevel-artists", 0): 3.0, ("bilevel-artists", 1): 5.0, ("bilevel-artists", 2): 10.0,
         ("ft-80-kd-pruned", 0): 2.0, ("ft-80-kd-pruned", 1): 2.5, ("ft-80-kd-pruned", 2): 3.0}


def write_table1_scores(root, skip=()) -> list:
    paths = [write_score(root, "base", p, "judge", {"style_acc": 0.95, "shape_acc": 1.0})
             for p in ("remove_a", "remove_b")]
    paths.append(write_score(root, "base", "val", "frechet", 1.5))
    for (stem, seed), (a, b) in STYLE.items():
        model = f"{stem}-s{seed}"
        if model in skip:
            continue
        paths.append(write_score(root, model, "remove_a", "judge", {"style_acc": a, "shape_acc": 1.0}))
        paths.append(write_score(root, model, "remove_b", "judge", {"style_acc": b, "shape_acc": 1.0}))
        paths.append(write_score(root, model, "val", "frechet", FRECH[(stem, seed)]))
    return paths


def test_model_names_split_into_method_setting_seed():
    assert parse_model("ft-80-kd-pruned-s2") == {"model": "ft-80-kd-pruned-s2", "stem": "ft-80-kd-pruned",
                                                  "method": "ft", "setting": "80-kd-pruned", "seed": 2}
    assert parse_model("bilevel-lam100-K20-s0")["setting"] == "lam100-K20"
    assert parse_model("base") == {"model": "base", "stem": "base", "method": "base", "setting": "", "seed": None}
    assert parse_model("expert-80")["seed"] is None


def test_tidy_frame_has_one_row_per_value(tmp_path):
    tidy = tidy_scores(write_table1_scores(tmp_path))
    row = tidy[(tidy.model == "bilevel-artists-s2") & (tidy.promptset == "remove_b") & (tidy.name == "style_acc")]
    assert row[["stem", "method", "setting", "seed", "metric"]].iloc[0].tolist() == ["bilevel-artists", "bilevel", "artists", 2, "judge"]
    assert row["value"].item() == 0.7
    assert tidy[(tidy.metric == "frechet") & (tidy.model == "base")]["name"].item() == ""


def test_seed_mean_and_std_match_hand_computation(tmp_path):
    frame = metric_table(tidy_scores(write_table1_scores(tmp_path)), ROWS, SPEC["columns"], [0, 1, 2])
    cell = frame[(frame.row == "bilevel") & (frame.column == "UA")].iloc[0]
    # UA per seed = 100 * (1 - style_acc), averaged over the two prompt sets: 70, 60, 20.
    per_seed = [100 * (1 - (a + b) / 2) for a, b in (STYLE[("bilevel-artists", s)] for s in range(3))]
    assert per_seed == pytest.approx([70.0, 60.0, 20.0])
    assert cell["mean"] == pytest.approx(50.0)
    assert cell["std"] == pytest.approx(math.sqrt((20**2 + 10**2 + 30**2) / 2))  # sample std, ddof 1
    assert cell["n"] == 3 and cell["seeds"] == "0 1 2"
    fr = frame[(frame.row == "distilled") & (frame.column == "Frechet")].iloc[0]
    assert (fr["mean"], fr["std"]) == pytest.approx((2.5, 0.5))
    teacher = frame[(frame.row == "teacher") & (frame.column == "UA")].iloc[0]  # no seed: one model, no std
    assert teacher["mean"] == pytest.approx(5.0) and teacher["n"] == 1 and math.isnan(teacher["std"])
    assert (frame["note"] == "").all()


def test_missing_models_become_notes_never_numbers(tmp_path):
    paths = write_table1_scores(tmp_path, skip={"bilevel-artists-s2", "ft-80-kd-pruned-s0", "ft-80-kd-pruned-s1",
                                                "ft-80-kd-pruned-s2"})
    # One score of a built model missing too: its seed drops out of that column only.
    paths = [p for p in paths if not (p.parts[-3] == "bilevel-artists-s0" and p.stem == "frechet")]
    frame = metric_table(tidy_scores(paths), ROWS, SPEC["columns"], [0, 1, 2])
    notes = sorted(frame.loc[frame.note != "", "note"])
    assert notes == ["not built: bilevel-artists-s0 (frechet on val)", "not built: bilevel-artists-s2",
                     "not built: ft-80-kd-pruned-s0", "not built: ft-80-kd-pruned-s1", "not built: ft-80-kd-pruned-s2"]
    assert frame.loc[frame.note != "", "mean"].isna().all()
    assert frame[(frame.row == "distilled") & (frame.note == "")].empty  # no number for a row with no model
    ua = frame[(frame.row == "bilevel") & (frame.column == "UA")].iloc[0]
    assert ua["n"] == 2 and ua["mean"] == pytest.approx(65.0) and ua["seeds"] == "0 1"
    fr = frame[(frame.row == "bilevel") & (frame.column == "Frechet")].iloc[0]
    assert ua["n"] == 2 and fr["n"] == 1 and fr["mean"] == 5.0
    # The drawn table says `not built` where no seed was, and prints the notes.
    fig, table = build_figure(SPEC, scores=paths)
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert "not built" in texts and "65.00 ± 7.07" in texts
    assert any("not built: ft-80-kd-pruned-s0" in t.get_text() for t in fig.texts)


def test_table_rebuilt_twice_is_byte_identical(tmp_path):
    paths = write_table1_scores(tmp_path, skip={"bilevel-artists-s1"})
    for out in ("a", "b"):
        fig, table = build_figure(SPEC, scores=paths)
        save_figure(fig, tmp_path / out / "table1.pdf", table)
    for suffix in (".pdf", ".png", ".csv"):
        assert (tmp_path / "a" / f"table1{suffix}").read_bytes() == (tmp_path / "b" / f"table1{suffix}").read_bytes()
    csv = pd.read_csv(tmp_path / "a/table1.csv", keep_default_na=False)
    assert "not built: bilevel-artists-s1" in set(csv["note"])


def test_resilience_formula_on_hand_case():
    assert resilience(3, 12) == pytest.approx(75.0)
    assert resilience(12, 12) == 0.0
    assert resilience(18, 12) == pytest.approx(-50.0)  # more hits than the distilled model
    assert math.isnan(resilience(1, 0))


def test_resilience_table_pairs_seeds_with_the_distilled_model(tmp_path):
    hits = {"ft-80-kd-pruned": (10, 20), "esdu-global": (2, 5)}
    paths = [write_score(tmp_path, f"{m}-s{s}", "mma", "nudenet", {"BELLY_EXPOSED": h - 1, "FEET_EXPOSED": 1})
             for m, hs in hits.items() for s, h in enumerate(hs)]
    col = {"label": "MMA", "metric": "nudenet", "promptsets": ["mma"]}  # no key: sum over labels
    rows = [{"label": "ESD", "model": "esdu-global"}, {"label": "UCE", "model": "uce-global"}]
    frame = resilience_table(tidy_scores(paths), rows, [col], "ft-80-kd-pruned", [0, 1])
    cell = frame[frame.row == "ESD"].iloc[0]
    assert cell["mean"] == pytest.approx((80.0 + 75.0) / 2)
    assert cell["std"] == pytest.approx(np.std([80.0, 75.0], ddof=1))
    assert set(frame.loc[frame.row == "UCE", "note"]) == {"not built: uce-global-s0", "not built: uce-global-s1"}


def test_resilience_is_undefined_when_the_distilled_model_has_no_hits(tmp_path):
    paths = [write_score(tmp_path, "ft-80-kd-pruned-s0", "syn", "judge", {"style_acc": 0.0}),
             write_score(tmp_path, "esdu-global-s0", "syn", "judge", {"style_acc": 0.0})]
    col = {"label": "synonyms", "metric": "judge", "key": "style_acc", "promptsets": ["syn"]}
    frame = resilience_table(tidy_scores(paths), [{"label": "ESD", "model": "esdu-global"}], [col], "ft-80-kd-pruned", [0])
    assert frame["mean"].isna().all()
    assert frame["note"].tolist() == ["undefined: ft-80-kd-pruned-s0 has no hits on synonyms"]


def test_bars_draw_the_tables_means_and_seed_deviations(tmp_path):
    """fig_continual's bars: each bar's height is the row's mean over seeds and its error bar the
    standard deviation, from the same frame a table of the spec writes."""
    paths = [write_score(tmp_path, f"{m}-s{s}", "val", "fid", v)
             for m, values in {"bilevel-first": [1.0, 3.0], "esdx-first": [4.0, 4.0]}.items()
             for s, v in enumerate(values)]
    rows = [{"label": "bilevel", "model": "bilevel-first", "color": 0}, {"label": "ESD-x", "model": "esdx-first", "color": 1},
            {"label": "never built", "model": "esdx-later", "color": 1}]
    spec = {"kind": "metric_bars", "title": "t", "seeds": [0, 1], "rows": rows,
            "columns": [{"label": "FID", "metric": "fid", "better": "lower", "promptsets": ["val"]}]}
    fig, frame = build_figure(spec, scores=paths)
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars[:2]] == [2.0, 4.0]
    assert np.isnan(bars[2].get_height())  # a row never built has no bar, and a note says so
    assert frame.loc[frame["row"] == "bilevel", "std"].item() == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert any("esdx-later" in n for n in frame["note"])
