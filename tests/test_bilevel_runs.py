"""A bilevel run's name is read in one place (bilevel/runs.py): rule `bilevel`'s wildcard
constraint, the command's flags and the figures' sweep stems agree on it."""

from __future__ import annotations

import re

import pytest

from pruneforget.bilevel.inputs import VARIANTS
from pruneforget.bilevel.runs import KINDS, NAME_PATTERN, BilevelRun, parse_run
from pruneforget.report.specs import sweep_stem


@pytest.mark.parametrize("name, run", [
    ("bilevel-artists-s0", BilevelRun("paper", "artists", 0)),
    ("bilevelsep-artists-s2", BilevelRun("separate", "artists", 2, kind="bilevelsep")),
    ("bilevelcode-global-s1", BilevelRun("code", "global", 1, kind="bilevelcode")),
    ("bilevel-artists-taylor-s0", BilevelRun("paper", "artists", 0, pruner="taylor")),
    ("bilevel-artists-esd-adversarial-s1", BilevelRun("paper", "artists", 1, upper="esd-adversarial")),
    ("bilevel-later-blocks-uce-s2", BilevelRun("paper", "later", 2, pruner="blocks", upper="uce")),
    ("bilevelcode-both-s0", BilevelRun("code", "both", 0, kind="bilevelcode")),
    ("bilevel-lam100-K20-s0", BilevelRun("paper", "artists", 0, 100.0, 20)),
    ("bilevel-lam0.5-K3-s4", BilevelRun("paper", "artists", 4, 0.5, 3)),
])
def test_names_parse_to_their_runs_and_flags(name, run):
    assert parse_run(name) == run
    assert re.fullmatch(NAME_PATTERN, name)
    flags = run.flags().split()
    assert flags[flags.index("--variant") + 1] == run.variant and flags[flags.index("--seed") + 1] == str(run.seed)
    assert ("--lam" in flags) == (run.lam is not None)
    assert ("--upper" in flags) == (run.upper is not None)
    # The command takes the config's concept sets: a continual stage reads the artist setting.
    assert flags[flags.index("--setting") + 1] in ("artists", "global")


@pytest.mark.parametrize("name, source", [
    ("bilevel-artists-s0", "expert-80"),
    ("bilevel-global-taylor-s1", "expert-80-taylor"),
    ("bilevel-first-esdx-s0", "expert-80"),
    ("bilevel-later-s3", "bilevel-first-s3"),
    ("bilevelcode-later-random-uce-s1", "bilevelcode-first-random-uce-s1"),
])
def test_a_run_starts_from_its_pruners_expert_or_continues_its_first_stage(name, source):
    assert parse_run(name).source() == source


@pytest.mark.parametrize("name", ["bilevel-cats-s0", "bilevelx-artists-s0", "bilevel-lam1-s0", "ft-80-kd-pruned-s0",
                                  "bilevel-artists-s0/extra", "esdx-artists-s0",
                                  "bilevel-artists-uce-taylor-s0", "bilevel-artists-aptp-s0", "bilevel-artists-esdz-s0"])
def test_other_names_are_neither_parsed_nor_matched_by_the_rule(name):
    assert not re.fullmatch(NAME_PATTERN, name)
    with pytest.raises(ValueError, match="not a bilevel run name"):
        parse_run(name)


def test_the_figures_sweep_stems_are_names_the_rule_builds():
    for lam, k in [(0, 3), (10, 20), (1000, 3), (0.5, 5)]:
        name = sweep_stem("bilevel-lam{lam}-K{K}", lam, k) + "-s0"
        assert parse_run(name).lam == lam and parse_run(name).k == k


def test_every_kind_is_a_variant_of_the_command():
    assert sorted(KINDS.values()) == sorted(VARIANTS)


def test_an_upper_override_replaces_the_method_and_keeps_its_settings():
    from pruneforget.bilevel.inputs import run_params

    section = {"lam": 1.0, "k": 2, "upper": {"method": "esdall", "x_t": "sample", "adversarial_steps": 3},
               "code": {"k": 10}, "sweep": {"lambdas": [0]}}
    params = run_params(section, "paper", upper="esd-adversarial")
    assert params["upper"] == {"method": "esd-adversarial", "x_t": "sample", "adversarial_steps": 3}
    assert section["upper"]["method"] == "esdall" and "sweep" not in params and "code" not in params
