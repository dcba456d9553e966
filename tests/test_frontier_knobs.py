"""Strength knobs (unlearn/knobs.py): run names with `-{knob}{value}` parse and format back, wrong
knobs are refused naming the valid ones, and the value reaches the training exactly (the run's
recorded settings carry it, with an integer knob an integer)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from pruneforget.bilevel.algorithm import BilevelInputError
from pruneforget.bilevel.inputs import run_params
from pruneforget.bilevel.runs import NAME_PATTERN as BILEVEL_PATTERN, BilevelRun, parse_run as parse_bilevel
from pruneforget.unlearn.knobs import KNOBS, apply_knob, knobs_of, parse_flag
from pruneforget.unlearn.runs import NAME_PATTERN as UNLEARN_PATTERN, UnlearnRun, parse_run as parse_unlearn
from test_bilevel_command import workspace  # noqa: F401 (fixture)
from test_unlearn_command import saved  # noqa: F401 (fixture)


@pytest.mark.parametrize("name, run", [
    ("esdx-artists-steps200-s0", UnlearnRun("esdx", "artists", 0, knob="steps", value=200)),
    ("uce-artists-erase2-s1", UnlearnRun("uce", "artists", 1, knob="erase", value=2.0)),
    ("conceptprune-artists-skill0.1-s0", UnlearnRun("conceptprune", "artists", 0, knob="skill", value=0.1)),
    ("esdu-global-taylor-lr0.0005-s2", UnlearnRun("esdu", "global", 2, "taylor", "lr", 5e-4)),
    ("uce-first-ulam0.5-s0", UnlearnRun("uce", "first", 0, knob="ulam", value=0.5)),
    ("esdall-artists-s0", UnlearnRun("esdall", "artists", 0)),
])
def test_two_stage_names_with_a_knob_round_trip(name, run):
    assert parse_unlearn(name) == run
    assert run.name() == name
    assert re.fullmatch(UNLEARN_PATTERN, name)
    assert run.source() == f"ft-80{'-' + run.pruner if run.pruner else ''}-kd-pruned-s{run.seed}"  # a knob changes no input


@pytest.mark.parametrize("name, run", [
    ("bilevel-artists-esdx-lam30-s2", BilevelRun("paper", "artists", 2, upper="esdx", knob="lam", value=30.0)),
    ("bilevelcode-artists-lam30-s0", BilevelRun("code", "artists", 0, kind="bilevelcode", knob="lam", value=30.0)),
    ("bilevel-artists-esdu-K10-s1", BilevelRun("paper", "artists", 1, upper="esdu", knob="K", value=10)),
    ("bilevel-global-taylor-ulr0.002-s0", BilevelRun("paper", "global", 0, pruner="taylor", knob="ulr", value=0.002)),
    ("bilevel-lam100-K20-s0", BilevelRun("paper", "artists", 0, 100.0, 20)),  # the sensitivity sweep's names stay
])
def test_bilevel_names_with_a_knob_round_trip(name, run):
    assert parse_bilevel(name) == run
    assert run.name() == name
    assert re.fullmatch(BILEVEL_PATTERN, name)


def test_integer_knobs_stay_integers_and_reach_the_flags():
    run = parse_unlearn("esdx-artists-steps200-s0")
    assert type(run.value) is int and run.flags().endswith("--knob steps=200")
    run = parse_bilevel("bilevel-artists-K5-s0")
    assert type(run.value) is int and run.flags().endswith("--knob K=5")
    assert parse_flag("K=5") == ("K", 5) and type(parse_flag("erase=2")[1]) is float
    with pytest.raises(ValueError, match="takes integers"):
        parse_unlearn("esdx-artists-steps2.5-s0")
    with pytest.raises(ValueError, match="takes integers"):
        parse_bilevel("bilevel-artists-K1e3-s0")


@pytest.mark.parametrize("parse, name, match", [
    (parse_unlearn, "esdx-artists-erase2-s0", "'erase' does not apply to esd runs; esd runs take steps, lr"),
    (parse_unlearn, "uce-artists-strength2-s0", "'strength' is not a knob; uce runs take erase, ulam"),
    (parse_unlearn, "esdx-later-steps50-s0", "continual 'later' stage takes no knob"),
    (parse_bilevel, "bilevel-artists-steps50-s0", "'steps' does not apply to bilevel runs; bilevel runs take lam, K, ulr"),
    (parse_bilevel, "bilevelcode-later-K5-s0", "continual 'later' stage takes no knob"),
])
def test_a_wrong_knob_is_refused_naming_the_valid_ones(parse, name, match):
    with pytest.raises(ValueError, match=match):
        parse(name)


def test_every_knob_names_a_key_of_the_tiny_config():
    import yaml

    from test_config import ROOT

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for name, knob in KNOBS.items():
        node = config
        for part in knob.key.split("."):
            node = node[part]
        assert isinstance(node, (int, float)), (name, knob.key)
        assert knobs_of(knob.families[0]).count(name) == 1


def test_a_knob_overrides_only_its_key_in_a_copy():
    section = {"uce": {"lam": 0.5, "erase_scale": 1.0}, "esd": {"steps": 100}}
    out = apply_knob(section, "unlearn", "erase", 4)
    assert out == {"uce": {"lam": 0.5, "erase_scale": 4.0}, "esd": {"steps": 100}}
    assert section["uce"]["erase_scale"] == 1.0
    with pytest.raises(ValueError, match="not a key of the unlearn section"):
        apply_knob(section, "unlearn", "K", 3)


def test_a_bilevel_knob_is_set_after_the_authors_variant():
    from test_bilevel_command import COMMAND

    params = run_params(COMMAND, "code", knob=("K", 7))
    assert params["k"] == 7 and params["lam"] == COMMAND["code"]["lam"]  # code's own k (2) replaced, its lam kept
    assert run_params(COMMAND, "paper", knob=("ulr", 0.02))["upper_lr"] == 0.02
    with pytest.raises(BilevelInputError, match="does not apply to bilevel runs"):
        run_params(COMMAND, "paper", knob=("steps", 5))


def test_the_unlearn_command_trains_at_the_knobs_value(saved):
    from test_unlearn_command import _run, _unlearn_config

    _run(saved, "uce", _unlearn_config("uce"), "plain")
    from pruneforget.cli import main

    params = _unlearn_config("uce")
    main(["unlearn", "--method", "uce", "--setting", "artists", "--model", str(saved / "model"), "--data",
          str(saved / "data"), "--params", json.dumps(params), "--seed", "1", "--knob", "erase=4",
          "--out", str(saved / "knobbed")])
    plain = json.loads((saved / "plain" / "unlearn.json").read_text())
    knobbed = json.loads((saved / "knobbed" / "unlearn.json").read_text())
    assert plain["params"]["erase_scale"] == 1.0 and knobbed["params"]["erase_scale"] == 4.0
    assert knobbed["knob"] == {"erase": 4.0}
    # The value was used, not only recorded: the edited cross-attention keys differ.
    from pruneforget.models.load import load_pipeline

    a, b = (load_pipeline(saved / d).unet.state_dict() for d in ("plain", "knobbed"))
    keys = [k for k in a if "attn2.to_k" in k]
    assert keys and any(not torch.equal(a[k], b[k]) for k in keys)
    with pytest.raises(SystemExit, match="does not apply to uce runs"):
        main(["unlearn", "--method", "uce", "--setting", "artists", "--model", str(saved / "model"),
              "--params", json.dumps(params), "--knob", "steps=3", "--out", str(saved / "bad")])
    assert not (saved / "bad").exists()


def test_the_bilevel_command_records_the_knobs_value(workspace):
    from test_bilevel_command import COMMAND, bilevel_command

    bilevel_command(workspace, "knobbed", COMMAND, "--variant", "code", "--knob", "K=3", "--no-eval")
    record = json.loads((workspace / "knobbed" / "run_config.json").read_text())
    assert record["params"]["k"] == 3 and type(record["params"]["k"]) is int
    assert record["params"]["lam"] == COMMAND["code"]["lam"]
