"""The frontiers in the DAG: at the paper scale `figures/fig_frontier.pdf` dry-runs every curve's
runs, each with its knob reaching the command as a flag, under the SLURM profile; both frontier
figures are targets of every scale's `paper_figures`."""

from __future__ import annotations

import re

import pytest
import yaml

from pruneforget.report.specs import resolve_figure
from pruneforget.unlearn.knobs import format_value
from test_snakemake import ROOT, snakemake


def test_sd21_dry_run_builds_every_frontier_run_with_its_knob():
    config = yaml.safe_load((ROOT / "config/sd21.yaml").read_text())
    result = snakemake("--profile", "slurm", "-n", "-p", "--forceall", "--configfile", "config/sd21.yaml", "--",
                       "figures/fig_frontier.pdf", "figures/table1_front.pdf")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    spec = resolve_figure(config, "fig_frontier")
    for curve in spec["curves"]:
        for point in curve["points"]:
            run = f"{point['model']}-s0"
            assert re.search(rf"output: results/sd21/{re.escape(run)}\n", out), f"{run} is not built"
            knob = f"--knob {curve['knob']}={format_value(curve['knob'], point['value'])}"
            # A curve's centre (the config's own value) is the main run, built without a knob.
            assert (knob in out) == (point["model"] != curve["run"]), (run, knob)
    assert len(re.findall(r"^\s*(?:local)?rule (?:unlearn|bilevel):", out, re.M)) == sum(len(c["values"]) for c in spec["curves"])
    assert re.search(r"^report_table1_front\s+1$", out, re.M) and re.search(r"^report_fig_frontier\s+1$", out, re.M)


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/sd21.yaml", "config/micro.yaml",
                                        "config/sd21_smoke.yaml"])
def test_every_scale_draws_the_frontiers(configfile):
    config = yaml.safe_load((ROOT / configfile).read_text())
    assert {"fig_frontier", "table1_front"} <= set(config["figures"]) and config["frontier"]["curves"]
