"""Static pruners reach their MAC budget, magnitude pruning keeps the largest-L1 units, and the
prune-static command writes a loadable expert (or refuses bad input before any work)."""

from __future__ import annotations

import json

import pytest
import torch
from test_prune_expert import tiny_unet

from pruneforget.cli import main
from pruneforget.models.load import load_pipeline
from pruneforget.models.structure import Group, is_pruned, prunable_groups
from pruneforget.prune.macs import MacTable, mac_table
from pruneforget.prune.static import greedy_code, magnitude_code, magnitude_scores, random_code

PARAMS = {"width_groups": 32, "latent_size": 8, "text_len": 16, "budget_tolerance": 0.03, "static_seed": 0}


@pytest.fixture(scope="module")
def unet_and_table():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    return unet, mac_table(unet, groups, latent_size=8, text_len=7)


@pytest.mark.parametrize("budget", [0.8, 0.55])
def test_static_pruners_reach_budget(unet_and_table, budget):
    unet, table = unet_and_table
    for code in (magnitude_code(unet, table, budget), random_code(table, budget, seed=3)):
        ratio = table.ratio(code).item()
        assert budget - 0.03 <= ratio <= budget
        assert all(code[g.name].item() == 1 for g in table.groups if g.is_depth)  # static: depth stays
        assert all(code[g.name].sum() >= 1 for g in table.groups)


def test_random_pruning_is_seeded(unet_and_table):
    _, table = unet_and_table
    a, b, c = (random_code(table, 0.7, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_magnitude_keeps_largest_l1_units(unet_and_table):
    unet, table = unet_and_table
    # hand-made case: the first ResNet's conv1 channel groups get L1 norms growing with the unit index
    g = table.groups[0]
    assert g.kind == "resnet_width"
    conv1 = unet.get_submodule(g.module).conv1
    saved = conv1.weight.detach().clone()
    with torch.no_grad():
        for j in range(g.units):
            conv1.weight[j * g.unit_size : (j + 1) * g.unit_size] = 0.01 * (j + 1)
    try:
        per_weight = conv1.weight[0].numel()
        expected = torch.tensor([0.01 * (j + 1) * per_weight * g.unit_size for j in range(g.units)])
        scores = magnitude_scores(unet, table.groups)
        torch.testing.assert_close(scores[g.name], expected)
        code = magnitude_code(unet, table, 0.55)
        kept = code[g.name]
        assert 0 < kept.sum() < g.units, "the budget must cut this group for the check to mean anything"
        # kept units are the largest-L1 ones: a suffix of the unit order
        assert torch.equal(kept, torch.sort(kept).values)
        # and in every group, no removed unit outscores a kept one
        for grp in table.groups:
            if grp.is_depth:
                continue
            s, m = scores[grp.name], code[grp.name].bool()
            if m.any() and (~m).any():
                assert s[m].min() >= s[~m].max()
    finally:
        with torch.no_grad():
            conv1.weight.copy_(saved)


def test_greedy_removes_lowest_priority_per_mac_by_hand():
    groups = [Group("a:width", "ff_width", "a", 3, 1), Group("b:width", "ff_width", "b", 2, 1)]
    table = MacTable(groups, full=100, prunable_full=50, unit_macs={"a:width": 10, "b:width": 10},
                     fixed_macs={}, parent={"a:width": None, "b:width": None})
    priority = {"a:width": torch.tensor([3.0, 1.0, 5.0]), "b:width": torch.tensor([2.0, 4.0])}
    code = greedy_code(table, priority, 0.8)  # remove 20 MACs: a[1] (1.0), then b[0] (2.0)
    assert code["a:width"].tolist() == [1, 0, 1] and code["b:width"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="below"):
        greedy_code(table, priority, 0.5)  # one unit per group must stay: 70 MACs at least


def test_prune_static_command_writes_loadable_expert(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "base")
    out = tmp_path / "expert-80-magnitude"
    main(["prune-static", "--base", str(tmp_path / "base"), "--method", "magnitude", "--budget", "0.8",
          "--params", json.dumps(PARAMS), "--out", str(out)])
    info = json.loads((out / "expert.json").read_text())
    assert info["method"] == "magnitude" and abs(info["mac_ratio"] - 0.8) <= 0.03
    assert info["macs"] < info["full_macs"] and info["params"] < info["full_params"]
    pipe = load_pipeline(out)
    assert is_pruned(pipe.unet)
    assert sum(p.numel() for p in pipe.unet.parameters()) == info["params"]


@pytest.mark.parametrize("budget", ["0", "1.2", "-0.5"])
def test_prune_static_rejects_budget_outside_unit_interval(tmp_path, budget, capsys):
    with pytest.raises(SystemExit, match=r"\(0, 1\]"):
        main(["prune-static", "--base", str(tmp_path / "missing"), "--method", "random", "--budget", budget,
              "--params", json.dumps(PARAMS), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_prune_static_rejects_missing_teacher(tmp_path):
    with pytest.raises(SystemExit, match="teacher .* is missing"):
        main(["prune-static", "--base", str(tmp_path / "nope"), "--method", "magnitude", "--budget", "0.8",
              "--params", json.dumps(PARAMS), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
