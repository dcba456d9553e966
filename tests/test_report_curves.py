"""Figs. 4 and 5 (quality during fine-tuning), the lambda/K sensitivity sweep and the cost table:
per-step statistics over seeds, sweep run names, and per-iteration and total costs by hand."""

from __future__ import annotations

import math

import pytest
from report_fixtures import write_run, write_score

from pruneforget.report.build import build_figure
from pruneforget.report.cost import cost_table, read_costs, run_cost
from pruneforget.report.save import save_figure
from pruneforget.report.specs import sweep_settings, sweep_stem

FIG4 = {"figure": "fig4", "kind": "curves", "title": "fig4", "seeds": [0, 1, 2],
        "groups": [{"label": "80%, distilled", "model": "ft-80-kd-pruned"},
                   {"label": "80%, no distillation", "model": "ft-80-diff-pruned", "linestyle": "--"}],
        "metrics": [{"name": "frechet", "label": "Frechet"}, {"name": "denoising_error", "label": "denoising error"}]}


def write_fig4_runs(root):
    runs = []
    for seed, offset in enumerate([0.0, 1.0, 5.0]):
        rows = [{"step": s, "frechet": 10.0 - s + offset, "denoising_error": 0.5 + offset / 10} for s in (0, 5, 10)]
        runs.append(write_run(root, f"ft-80-kd-pruned-s{seed}", eval_rows=rows))
    runs.append(write_run(root, "ft-80-diff-pruned-s0", eval_rows=[{"step": 0, "frechet": 20.0}, {"step": 10, "frechet": 15.0}]))
    return runs


def test_curves_average_seeds_per_step_and_note_missing_runs(tmp_path):
    fig, frame = build_figure(FIG4, runs=write_fig4_runs(tmp_path))
    kd = frame[(frame.group == "80%, distilled") & (frame.metric == "frechet")].set_index("step")
    assert kd.loc[5, "mean"] == pytest.approx(5.0 + 2.0)          # 5 + mean(0, 1, 5)
    assert kd.loc[5, "std"] == pytest.approx(math.sqrt(((-2) ** 2 + 1 + 9) / 2))
    assert (kd.loc[10, "min"], kd.loc[10, "max"], kd.loc[10, "n"]) == (0.0, 5.0, 3)
    diff = frame[(frame.group == "80%, no distillation") & (frame.metric == "frechet")]
    assert diff["n"].tolist() == [1, 1] and diff["mean"].tolist() == [20.0, 15.0]
    notes = set(frame.loc[frame.note != "", "note"])
    assert notes == {"not built: ft-80-diff-pruned-s1", "not built: ft-80-diff-pruned-s2",
                     "not built: ft-80-diff-pruned-s0 (no denoising_error column in its log)"}
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([10 + 2.0, 5 + 2.0, 0 + 2.0])


def test_curves_rebuild_byte_identical(tmp_path):
    runs = write_fig4_runs(tmp_path)
    for out in ("a", "b"):
        fig, frame = build_figure(FIG4, runs=runs)
        save_figure(fig, tmp_path / out / "fig4.pdf", frame)
    for suffix in (".pdf", ".png", ".csv"):
        assert (tmp_path / "a" / f"fig4{suffix}").read_bytes() == (tmp_path / "b" / f"fig4{suffix}").read_bytes()


def test_sweep_is_one_at_a_time_around_the_default():
    assert sweep_settings([0, 100], [5, 20], {"lam": 100, "K": 20}) == [
        ("lambda", 0, 20), ("lambda", 100, 20), ("K", 100, 5), ("K", 100, 20)]
    assert sweep_stem("bilevel-lam{lam}-K{K}", 100.0, 20) == "bilevel-lam100-K20"
    assert sweep_stem("bilevel-lam{lam}-K{K}", 0.5, 5) == "bilevel-lam0.5-K5"
    centre = {"lam": 100, "K": 20}
    assert sweep_stem("bilevel-lam{lam}-K{K}", 100.0, 20, centre, "bilevel-artists") == "bilevel-artists"
    assert sweep_stem("bilevel-lam{lam}-K{K}", 100.0, 5, centre, "bilevel-artists") == "bilevel-lam100-K5"


def test_sensitivity_table_from_sweep_scores(tmp_path):
    paths = []
    for lam, acc in [(0, 0.9), (100, 0.1)]:
        for seed in (0, 1):
            paths.append(write_score(tmp_path, f"bilevel-lam{lam}-K20-s{seed}", "remove_a", "judge",
                                     {"style_acc": acc + 0.1 * seed}))
    spec = {"figure": "fig_sensitivity", "kind": "sweep", "title": "s", "seeds": [0, 1], "model": "bilevel-lam{lam}-K{K}",
            "lambdas": [0, 100], "Ks": [5, 20], "default": {"lam": 100, "K": 20},
            "columns": [{"label": "UA", "metric": "judge", "key": "style_acc", "transform": "complement", "scale": 100,
                         "promptsets": ["remove_a"]}]}
    fig, frame = build_figure(spec, scores=paths)
    cells = frame[frame.note == ""]
    by = {(r.sweep, r.lam, r.K): r for r in cells.itertuples()}
    assert by[("lambda", 0, 20)].mean == pytest.approx(5.0) and by[("lambda", 100, 20)].mean == pytest.approx(85.0)
    assert by[("K", 100, 20)].mean == pytest.approx(85.0) and by[("K", 100, 20)].n == 2
    assert set(frame.loc[frame.note != "", "note"]) == {"not built: bilevel-lam100-K5-s0", "not built: bilevel-lam100-K5-s1"}


COST = {"lower": {"seconds_per_step": 0.5, "peak_memory_mb": 1000.0, "steps": 200},
        "upper": {"seconds_per_step": 2.0, "peak_memory_mb": 1500.0, "steps": 10}}


def loop_cost(kinds: dict) -> dict:
    """`kinds` ({kind: seconds_per_step, peak_memory_mb, steps}) as the training loop writes cost.json:
    under `objectives`, memory in bytes, the mean per step slowed by a first step's set-up."""
    return {"device": "cpu", "objectives": {
        k: {"steps": c["steps"], "seconds_per_step_steady": c["seconds_per_step"],
            "seconds_per_step": c["seconds_per_step"] + 10.0 / c["steps"],
            "seconds_total": c["seconds_per_step"] * c["steps"] + 10.0, "peak_memory_bytes": c["peak_memory_mb"] * 2**20}
        for k, c in kinds.items()}}


def test_bilevel_iteration_cost_is_k_lower_steps_plus_one_upper_step():
    cost = run_cost(COST, ["lower", "upper"])
    # 200 lower steps, 10 upper: K = 20; one iteration = 20 * 0.5 + 2.0 = 12 s.
    assert cost["per upper step"]["seconds_per_step"] == pytest.approx(12.0)
    assert cost["total"]["total_seconds"] == pytest.approx(120.0)
    assert cost["total"]["peak_memory_mb"] == 1500.0


def test_cost_table_totals_pair_seeds_and_note_missing_runs(tmp_path):
    runs = [write_run(tmp_path, f"ft-80-kd-pruned-s{s}", cost=loop_cost({"ft": {"seconds_per_step": 1.0 + s, "peak_memory_mb": 800.0, "steps": 100}}))
            for s in (0, 1)]
    runs += [write_run(tmp_path, f"esdx-artists-s{s}", cost=loop_cost({"esd": {"seconds_per_step": 0.1, "peak_memory_mb": 900.0, "steps": 50}}))
             for s in (0, 1)]
    runs.append(write_run(tmp_path, "bilevel-artists-s0", cost=loop_cost(COST)))
    runs.append(write_run(tmp_path, "bilevel-artists-s1", cost=loop_cost({"lower": COST["lower"]})))
    rows = [{"label": "fine-tune", "model": "ft-80-kd-pruned", "kinds": ["ft"]},
            {"label": "ESD-x", "model": "esdx-artists", "kinds": ["esd"]},
            {"label": "bilevel", "model": "bilevel-artists", "kinds": ["lower", "upper"]}]
    frame = cost_table(read_costs(runs), rows,
                       [{"label": "two-stage", "rows": ["fine-tune", "ESD-x"]}], [0, 1])
    two = frame[frame.row == "two-stage"].iloc[0]
    # seed 0: 100 * 1 + 50 * 0.1 = 105 s; seed 1: 100 * 2 + 5 = 205 s.
    assert (two.total_seconds, two.total_seconds_std, two.n) == (pytest.approx(155.0), pytest.approx(math.sqrt(5000)), 2)
    assert two.peak_memory_mb == 900.0
    it = frame[(frame.row == "bilevel") & (frame.kind == "per upper step")].iloc[0]
    assert (it.seconds_per_step, it.n) == (pytest.approx(12.0), 1)
    assert list(frame.loc[frame.note != "", "note"]) == ["not built: bilevel-artists-s1 (no upper in cost.json)"]
    spec = {"figure": "table_cost", "kind": "cost", "title": "cost", "seeds": [0, 1], "rows": rows,
            "totals": [{"label": "two-stage", "rows": ["fine-tune", "ESD-x"]}]}
    fig, frame2 = build_figure(spec, runs=runs)
    assert frame2.equals(frame)
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert "155.0 ± 70.7" in texts and "bilevel / per upper step" in texts
