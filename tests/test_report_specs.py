"""The config's `figures:` section resolves, per figure, to the exact inputs its rule lists and the
spec its command draws; every figure of every config resolves; the `report` command runs on
fixture scores; figure targets are Snakemake targets whose DAG reaches the score rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from report_fixtures import write_score

from pruneforget.cli import main
from pruneforget.report.build import build_figure
from pruneforget.report.specs import KINDS, expand, figure_config_keys, figure_inputs, resolve_figure
from pruneforget.variants import scales

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["config/config.yaml", "config/micro.yaml", "config/sd21.yaml", "config/sd21_smoke.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_placeholders_expand_per_removed_style_and_to_the_global_style():
    obj = {"promptsets": ["remove_{removed}", "retain"], "title": "{global} gone",
           "columns": [{"label": "{removed}", "promptset": "remove_{removed}", "index": 0}, {"label": "x", "promptset": "val"}],
           "table": [{"label": "UA", "promptsets": ["remove_{removed}"]}]}
    out = expand(obj, ["stripes", "dots"], "waves")
    assert out["promptsets"] == ["remove_stripes", "remove_dots", "retain"]
    assert out["table"] == [{"label": "UA", "promptsets": ["remove_stripes", "remove_dots"]}]  # one column, two sets
    assert out["title"] == "waves gone"
    assert [c["label"] for c in out["columns"]] == ["stripes", "dots", "x"]
    assert out["columns"][1]["promptset"] == "remove_dots"
    with pytest.raises(ValueError, match="figures.global_style"):
        expand(["synonyms_{global}"], [], None)


def test_table1_inputs_are_every_row_seed_and_prompt_set():
    spec = resolve_figure(load("config/config.yaml"), "table1")
    assert spec["seeds"] == [0, 1, 2] and spec["kind"] == "metric_table"
    ua = spec["columns"][0]
    assert ua["promptsets"] == ["remove_stripes", "remove_dots", "remove_waves"]
    scores = figure_inputs(spec, "tiny")["scores"]
    assert "results/tiny/scores/base/remove_dots/judge.json" in scores
    assert "results/tiny/scores/bilevel-artists-s2/synonyms_waves/judge.json" in scores
    assert "results/tiny/scores/ft-80-kd-pruned-s1/val/frechet_evaluator.json" in scores
    assert not any("base-s" in s for s in scores)  # the teacher has no training seed
    # 6 seeded rows x 3 seeds + the teacher; judge on 3 remove + 3 synonym sets + retain, cp on 3, frechet, denoising
    assert len(scores) == (6 * 3 + 1) * (3 + 3 + 1 + 3 + 1 + 1)


@pytest.mark.parametrize("config", CONFIGS)
def test_every_figure_of_every_config_resolves_to_inputs(config):
    cfg = load(config)
    # The generalisation table exists where the config has world variants to compare (not sd21).
    optional = {name for name, kind in KINDS.items() if kind == "generalisation_table"}
    assert set(KINDS) - optional <= set(cfg["figures"])
    own_scales = "|".join(re.escape(s) for s in scales(cfg))
    for name, kind in KINDS.items():
        if name not in cfg["figures"]:
            continue
        spec = resolve_figure(cfg, name)
        inputs = figure_inputs(spec, cfg["scale"])
        assert spec["kind"] == kind
        assert sum(len(v) for v in inputs.values()) > 0, name
        for path in inputs["scores"] + inputs["runs"] + inputs["samples"]:
            assert re.match(rf"results/({own_scales})/", path) and "{" not in path, path
        # With nothing built, every figure still draws: notes only, no number anywhere.
        fig, frame = build_figure(spec)
        plt.close(fig)
        assert len(frame) and (frame["note"] != "").all(), name
        assert frame.filter(["mean", "std", "total_seconds"]).isna().all().all(), name


@pytest.mark.parametrize("config", CONFIGS)
def test_a_figure_spec_reads_only_its_declared_config_keys(config):
    """DVC reruns a figure's stage only when one of figure_config_keys changes: a config holding
    nothing but those keys resolves to the same spec, and each figure's own section is one of them."""
    cfg = load(config)
    for name in (n for n in cfg["figures"] if isinstance(cfg["figures"][n], dict)):
        keys = figure_config_keys(cfg, name)
        assert f"figures.{name}" in keys
        only: dict = {"scale": cfg["scale"]}  # which results/ directories: the config's identity, not a param
        for key in keys:
            section, sub = key.split(".", 1)
            only.setdefault(section, {})[sub] = cfg[section][sub]
        assert resolve_figure(only, name) == resolve_figure(cfg, name), name


def test_grids_show_the_grid_seed_and_curves_read_run_directories():
    cfg = load("config/config.yaml")
    fig2 = figure_inputs(resolve_figure(cfg, "fig2"), "tiny")
    assert "results/tiny/samples/ft-80-kd-pruned-s0/synonyms_waves" in fig2["samples"]
    assert "results/tiny/samples/base/remove_stripes" in fig2["samples"]
    assert fig2["scores"] == fig2["runs"] == []
    fig4 = figure_inputs(resolve_figure(cfg, "fig4"), "tiny")
    assert fig4["runs"][:3] == ["results/tiny/ft-55-diff-pruned-s0", "results/tiny/ft-55-diff-pruned-s1",
                                "results/tiny/ft-55-diff-pruned-s2"]
    sens = figure_inputs(resolve_figure(cfg, "fig_sensitivity"), "tiny")["scores"]
    assert "results/tiny/scores/bilevel-lam0-K3-s0/val/denoising_error.json" in sens
    assert "results/tiny/scores/bilevel-lam10-K20-s0/retain/judge.json" in sens
    assert not any("lam0-K20" in s for s in sens)  # one at a time, not the full grid
    assert not any("-s1/" in s for s in sens)  # the sweep's own seeds: [0]
    # the centre (lambda 10, K 3) is the main run, read rather than trained twice
    assert "results/tiny/scores/bilevel-artists-s0/retain/judge.json" in sens
    assert not any("lam10-K3" in s for s in sens)


@pytest.mark.parametrize("name", CONFIGS)
def test_sensitivity_figure_draws_exactly_the_sweep_the_runs_make(name):
    """One list: the figure's lambdas, Ks and centre are bilevel.sweep, bilevel.lam and bilevel.k."""
    cfg = load(name)
    spec = resolve_figure(cfg, "fig_sensitivity")
    assert spec["lambdas"] == cfg["bilevel"]["sweep"]["lambdas"] and spec["Ks"] == cfg["bilevel"]["sweep"]["Ks"]
    assert spec["default"] == {"lam": cfg["bilevel"]["lam"], "K": cfg["bilevel"]["k"]}
    cfg["bilevel"]["sweep"]["lambdas"] = [0.5]
    cfg["bilevel"]["lam"] = 7.0
    moved = resolve_figure(cfg, "fig_sensitivity")
    assert moved["lambdas"] == [0.5] and moved["default"]["lam"] == 7.0


def test_report_command_draws_a_table_from_score_files(tmp_path, monkeypatch):
    spec = resolve_figure(load("config/micro.yaml"), "table3")
    spec["rows"] = spec["rows"][:2]
    spec["columns"] = [c for c in spec["columns"] if c["metric"] == "judge"]
    paths = [write_score(tmp_path, m, "retain", "judge", {"style_acc": a, "shape_acc": 1.0})
             for m, a in [("ft-80-kd-pruned-s0", 0.9), ("esdu-global-s0", 0.6)]]
    out = tmp_path / "figures/table3.pdf"
    main(["report", "--figure", "table3", "--params", json.dumps(spec), "--scores", *map(str, paths), "--out", str(out)])
    csv = pd.read_csv(out.with_suffix(".csv"), keep_default_na=False)
    assert csv.set_index(["row", "column"]).loc[("+ ESD-u", "IRA"), "mean"] == pytest.approx(60.0)
    assert out.exists() and out.with_suffix(".png").exists()
    with pytest.raises(SystemExit, match="not of --figure table1"):
        main(["report", "--figure", "table1", "--params", json.dumps(spec), "--out", str(out)])
    with pytest.raises(SystemExit, match="inputs do not exist"):
        main(["report", "--figure", "table3", "--params", json.dumps(spec), "--scores", str(tmp_path / "nope.json"),
              "--out", str(out)])


def test_figure_target_dag_reaches_the_sample_and_score_rules(tmp_path):
    """With rows whose models the workflow can already build (the teacher), `figures/table1.pdf`
    is a target: its DAG samples the teacher on the removal prompt sets and judges them."""
    cfg = load("config/micro.yaml")
    t1 = cfg["figures"]["table1"]
    t1["rows"] = [r for r in t1["rows"] if r["model"] == "base"]
    t1["columns"] = [c for c in t1["columns"] if c["metric"] == "judge"]
    path = tmp_path / "micro_table1.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = subprocess.run(["snakemake", "-n", "--forceall", "--configfile", str(path), "--", "figures/table1.pdf"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "report_table1" in out and "results/tiny/scores/base/synonyms_dots/judge.json" in out
    assert "results/tiny/samples/base/retain" in out


def test_a_figure_redraws_alone_when_its_drawing_code_changes(tmp_path):
    """After a full run (here: table1's score files and the table, nothing upstream of them),
    editing the report code reruns report_table1 and nothing else; editing training code, nothing."""
    import os

    from repo_copy import copy_repo

    repo = tmp_path / "repo"
    copy_repo(repo)
    old, made = 1_000_000_000, 1_000_000_100  # sources, then the run's outputs, in that order
    for path in (repo / "src").rglob("*.py"):
        os.utime(path, (old, old))
    spec = resolve_figure(load("config/config.yaml"), "table1")
    for rel in [*figure_inputs(spec, "tiny")["scores"], *(f"figures/table1.{ext}" for ext in ("pdf", "png", "csv"))]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("{}")
        os.utime(repo / rel, (made, made))

    def dry_run() -> str:
        result = subprocess.run(["snakemake", "-n", "--", "figures/table1.pdf"], cwd=repo, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    assert "Nothing to be done" in dry_run()
    (repo / "src/pruneforget/train/loop.py").touch()
    assert "Nothing to be done" in dry_run()
    (repo / "src/pruneforget/report/tables.py").touch()
    jobs = re.findall(r"^(\w+)\s+(\d+)$", dry_run().split("Job stats:")[1], re.M)
    assert [(rule, n) for rule, n in jobs if rule != "total"] == [("report_table1", "1")], jobs


def test_config_check_names_a_global_style_that_is_not_a_world_style():
    from pruneforget.config import ConfigError, check_config

    cfg = load("config/config.yaml")
    cfg["figures"]["global_style"] = "zigzag"
    with pytest.raises(ConfigError, match="figures.global_style"):
        check_config(cfg)
    cfg = load("config/sd21.yaml")  # no world styles at paper scale: {removed} has no value
    cfg["figures"]["fig1"]["columns"] = [{"label": "{removed}", "promptset": "remove_{removed}", "index": 0}]
    with pytest.raises(ConfigError, match="figures.fig1: .*world.remove_styles"):
        check_config(cfg)


@pytest.mark.parametrize("config", CONFIGS)
def test_cost_table_kinds_are_objective_names_the_runs_write(config):
    """cost.json is keyed by the training loop's objective names; a kind no run writes would leave
    the cost table empty ("not built") even with every run present."""
    import inspect

    from pruneforget.bilevel import algorithm as bilevel
    from pruneforget.train import finetune
    from pruneforget.unlearn import esd

    written = {"ft": finetune, "esd": esd, "lower": bilevel, "upper": bilevel}
    for name, module in written.items():
        assert f'name="{name}"' in inspect.getsource(module)
    for row in load(config)["figures"]["table_cost"]["rows"]:
        assert set(row["kinds"]) <= set(written), row
