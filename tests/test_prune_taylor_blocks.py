"""The data-driven static pruners: Taylor importance is the first-order loss change of deleting a
unit's weights (by hand and by finite differences), block removal goes by measured output change
per MAC, every pruner meets its MAC budget on the tiny, micro and SD 2.1 UNets, and prune-static
refuses data for the data-free pruners and writes taylor and blocks experts that compute what
their masked twins compute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers.models.activations import GEGLU
from PIL import Image
from sd21_random import random_sd21_unet
from test_prune_expert import tiny_unet
from torch import nn

from pruneforget.cli import main
from pruneforget.models.expert import extract_expert
from pruneforget.models.load import load_pipeline
from pruneforget.models.structure import Group, full_code, load_code, prunable_groups
from pruneforget.models.tiny import build_unet
from pruneforget.prune import METHODS, NEEDS_DATA
from pruneforget.prune.blocks import (
    block_importance,
    block_macs_saved,
    block_output_change,
    blocks_code,
    blocks_only_floor,
    code_from_change,
    remove_blocks,
)
from pruneforget.prune.gates import gated
from pruneforget.prune.greedy import greedy_code, normalised_priority
from pruneforget.prune.macs import MacTable, mac_table
from pruneforget.prune.select import prune_code
from pruneforget.prune.taylor import denoising_mse, removed_parameters, taylor_group_scores, taylor_scores

ROOT = Path(__file__).resolve().parents[1]
TOL = 0.03


def config_unet(name: str):
    """The UNet a scale's config builds (random weights), and its MAC table at the config's sizes."""
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    torch.manual_seed(0)
    unet = build_unet(cfg["base"]["unet"], latent_size=cfg["prune"]["latent_size"],
                      latent_channels=cfg["base"]["vae"]["latent_channels"], cross_attention_dim=384).eval()
    table = mac_table(unet, prunable_groups(unet, cfg["prune"]["width_groups"]), cfg["prune"]["latent_size"],
                      cfg["prune"]["text_len"])
    return unet, table


def random_batches(unet, n: int, size: int, latent: int, text_len: int, seed: int = 0) -> list[dict]:
    """Denoising batches with random latents, text and targets (what the pruners read of a batch)."""
    gen = torch.Generator().manual_seed(seed)
    c, d = unet.config.in_channels, unet.config.cross_attention_dim
    dtype = next(unet.parameters()).dtype
    return [{"noisy": torch.randn(size, c, latent, latent, generator=gen).to(dtype),
             "timesteps": torch.randint(1000, (size,), generator=gen),
             "text": torch.randn(size, text_len, d, generator=gen).to(dtype),
             "target": torch.randn(size, c, latent, latent, generator=gen).to(dtype)} for _ in range(n)]


# --- Taylor importance -------------------------------------------------------------------------

def test_taylor_score_of_a_toy_feed_forward_by_hand():
    # GEGLU projection 2 -> 2 x 4 (value rows 0-3, gate rows 4-7), output 4 -> 3; 2 units of 2.
    ff = nn.Module()
    ff.net = nn.ModuleList([GEGLU(2, 4), nn.Dropout(0.0), nn.Linear(4, 3)])
    group = Group("ff:width", "ff_width", "ff", units=2, unit_size=2)
    proj, out = ff.net[0].proj, ff.net[2]
    with torch.no_grad():
        for p in (proj.weight, proj.bias, out.weight, out.bias):
            p.fill_(1.0)
    rows = torch.arange(1.0, 9.0)
    proj.weight.grad = rows.view(8, 1).expand(8, 2).clone()  # row r: r + 1 per entry
    proj.bias.grad = -rows.clone()
    out.weight.grad = -10 * torch.arange(1.0, 5.0).view(1, 4).expand(3, 4).clone()  # column c: -10 (c + 1)
    out.bias.grad = torch.full((3,), 100.0)  # the output bias stays when a unit goes: not counted
    # unit 0: value rows 0,1: (1 + 2) * 2; gate rows 4,5: (5 + 6) * 2; biases -(1 + 2) - (5 + 6);
    #         columns 0,1 of the output: 3 rows * -(10 + 20)       -> 6 + 22 - 3 - 11 - 90 = -76
    # unit 1: (3 + 4) * 2 + (7 + 8) * 2 - (3 + 4) - (7 + 8) - 3 * (30 + 40) = 14 + 30 - 22 - 210 = -188
    torch.testing.assert_close(taylor_group_scores(ff, group), torch.tensor([76.0, 188.0], dtype=torch.float64))


@pytest.fixture(scope="module")
def tiny_double():
    unet = tiny_unet().double()
    groups = prunable_groups(unet)
    return unet, groups, random_batches(unet, 2, 2, 8, 7, seed=1)


def _scaled_loss(unet, group, unit, alpha, batches):
    """Sum over batches of the denoising loss with every weight of `unit` removal deletes scaled by alpha."""
    module = unet.get_submodule(group.module)
    saved = []
    with torch.no_grad():
        for p, axis, halves in removed_parameters(module, group):
            saved.append((p, p.detach().clone()))
            view = p.data.movedim(axis, 0)  # halves of units x unit_size slices along the unit axis
            for h in range(halves):
                lo = h * group.units * group.unit_size + unit * group.unit_size
                view[lo : lo + group.unit_size] *= alpha
    try:
        with torch.no_grad():
            return [float(denoising_mse(unet, b)) for b in batches]
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)


def test_taylor_score_is_the_loss_slope_along_the_units_weights_summed_over_batches(tiny_double):
    unet, groups, batches = tiny_double
    scores = taylor_scores(unet, groups, batches)
    assert all(p.grad is None and p.requires_grad for p in unet.parameters())  # the UNet is left as it was
    h = 1e-5
    for kind in ("resnet_width", "attn_heads", "ff_width"):
        group = next(g for g in groups if g.kind == kind)
        for unit in (0, group.units - 1):
            up = _scaled_loss(unet, group, unit, 1 + h, batches)
            down = _scaled_loss(unet, group, unit, 1 - h, batches)
            per_batch = [(u - d) / (2 * h) for u, d in zip(up, down)]  # dL_b / d alpha = sum w * dL_b/dw
            expected = abs(sum(per_batch))  # the gradients are summed before the absolute value
            assert scores[group.name][unit].item() == pytest.approx(expected, rel=1e-4, abs=1e-9), (group.name, unit)


def test_taylor_counts_exactly_the_weights_slicing_removes():
    unet = tiny_unet()
    groups = prunable_groups(unet)
    full = sum(p.numel() for p in unet.parameters())
    for kind in ("resnet_width", "attn_heads", "ff_width"):
        group = next(g for g in groups if g.kind == kind)
        code = full_code(groups)
        code[group.name] = torch.ones(group.units)
        code[group.name][0] = 0
        sliced = sum(p.numel() for p in extract_expert(unet, code).parameters())
        counted = sum(p.numel() // group.units for p, _, _ in removed_parameters(unet.get_submodule(group.module), group))
        assert full - sliced == counted, kind


# --- block removal -----------------------------------------------------------------------------

def _depth_table() -> MacTable:
    """Two removable blocks costing 10 and 30 of 100 MACs, and a width group outside them."""
    groups = [Group("a:depth", "depth_resnet", "a", 1, 1), Group("b:depth", "depth_attn", "b", 1, 1)]
    return MacTable(groups, full=100, prunable_full=40, unit_macs={}, fixed_macs={"a:depth": 10, "b:depth": 30},
                    parent={"a:depth": None, "b:depth": None})


def test_block_removal_goes_by_output_change_per_mac_and_skips_overshooting_blocks():
    table = _depth_table()
    assert block_macs_saved(table) == {"a:depth": 10.0, "b:depth": 30.0}
    # b changes the output more (1.5 against 1.0) but per MAC less (0.05 against 0.1): it goes first
    importance = block_importance({"a:depth": 1.0, "b:depth": 1.5}, block_macs_saved(table))
    assert importance == pytest.approx({"a:depth": 0.1, "b:depth": 0.05})
    code = remove_blocks(table, importance, budget=0.7, slack=0.0)
    assert (code["a:depth"].item(), code["b:depth"].item()) == (1.0, 0.0)
    # at 0.75, removing b would land at 0.70: skipped; a goes instead (0.90), width pruning finishes
    code = remove_blocks(table, importance, budget=0.75, slack=0.0)
    assert (code["a:depth"].item(), code["b:depth"].item()) == (0.0, 1.0)
    code = remove_blocks(table, importance, budget=0.75, slack=0.05)  # 0.70 is within the slack
    assert (code["a:depth"].item(), code["b:depth"].item()) == (1.0, 0.0)


def test_greedy_skips_width_groups_inside_removed_blocks():
    groups = [Group("d.w:width", "ff_width", "d.w", 2, 1), Group("v:width", "ff_width", "v", 3, 1),
              Group("d:depth", "depth_attn", "d", 1, 1)]
    table = MacTable(groups, full=100, prunable_full=80, unit_macs={"d.w:width": 20, "v:width": 10},
                     fixed_macs={"d:depth": 10}, parent={"d.w:width": "d:depth", "v:width": None, "d:depth": None})
    start = full_code(groups)
    start["d:depth"] = torch.zeros(1)  # 20 unprunable + v 30 = 50 MACs left (d: 10 fixed + 2 x 20)
    # d.w has the lowest priority but costs nothing any more: only v's units can go
    priority = {"d.w:width": torch.tensor([0.0, 0.0]), "v:width": torch.tensor([3.0, 1.0, 2.0])}
    code = greedy_code(table, priority, 0.35, start=start)
    assert code["d.w:width"].tolist() == [1, 1] and code["d:depth"].item() == 0
    assert code["v:width"].tolist() == [1, 0, 0] and table.ratio(code).item() == pytest.approx(0.30)
    with pytest.raises(ValueError, match="below"):
        greedy_code(table, priority, 0.25, start=start)


def test_block_removal_measures_a_block_that_changes_nothing_as_least_important():
    unet = tiny_unet()
    table = mac_table(unet, prunable_groups(unet), latent_size=8, text_len=7)
    depth = [g for g in table.groups if g.is_depth]
    target = next(g for g in depth if g.kind == "depth_resnet" and g.module.startswith("up_blocks"))
    resnet = unet.get_submodule(target.module)
    with torch.no_grad():  # no residual branch: the ResNet computes its shortcut, as a removed one does
        resnet.conv2.weight.zero_()
        resnet.conv2.bias.zero_()
    batches = random_batches(unet, 2, 1, 8, 7)
    change = block_output_change(unet, table, batches)
    assert change[target.name] == 0.0
    assert all(change[d.name] > 0 for d in depth if d is not target)
    budget = table.ratio({**full_code(table.groups), target.name: torch.zeros(1)}).item()
    code, record = blocks_code(unet, table, batches, budget, slack=0.0)
    assert record["removed_blocks"] == [target.name]
    assert all(code[d.name].item() == (0 if d is target else 1) for d in depth)
    assert all(code[g.name].sum() == g.units for g in table.groups if not g.is_depth)  # the block alone meets the budget


# --- budgets on every scale's UNet ---------------------------------------------------------------

def _check_code(table, code, budget, method):
    ratio = table.ratio(code).item()
    assert budget - TOL <= ratio <= budget, (method, budget, ratio)
    for g in table.groups:  # every width group that still computes keeps a unit
        parent = table.parent.get(g.name)
        if not g.is_depth and (parent is None or code[parent].item() == 1):
            assert code[g.name].sum() >= 1, g.name
    if method != "blocks":
        assert all(code[g.name].item() == 1 for g in table.groups if g.is_depth)


def _check_every_pruner(unet, table, batches):
    """Every pruner's code at both budgets; the importance of taylor and blocks is measured once
    (on a CPU, each measurement is many UNet evaluations) and the codes made as select.prune_code does."""
    scores = taylor_scores(unet, table.groups, batches)
    change = block_output_change(unet, table, batches)
    for budget in (0.8, 0.55):
        for method in ("magnitude", "random"):
            _check_code(table, prune_code(method, unet, table, budget, seed=0)[0], budget, method)
        _check_code(table, greedy_code(table, normalised_priority(scores, table), budget), budget, "taylor")
        code, record = code_from_change(unet, table, change, budget, slack=TOL)
        _check_code(table, code, budget, "blocks")
        assert record["removed_blocks"], "every UNet here can lose a block at either budget"


@pytest.mark.parametrize("config", ["config.yaml", "micro.yaml"])
def test_every_pruner_meets_the_budget_on_the_tiny_and_micro_unets(config):
    unet, table = config_unet(config)
    cfg = yaml.safe_load((ROOT / "config" / config).read_text())["prune"]
    _check_every_pruner(unet, table, random_batches(unet, 1, 1, cfg["latent_size"], cfg["text_len"]))


@pytest.fixture(scope="module")
def sd21():
    """SD 2.1's UNet with random weights, its table at the smoke's sizes (8x8 latents, 77 tokens)."""
    unet = random_sd21_unet(sample_size=8, seed=0)
    return unet, mac_table(unet, prunable_groups(unet), latent_size=8, text_len=77)


def test_every_pruner_meets_the_budget_on_the_sd21_unet(sd21):
    unet, table = sd21
    _check_every_pruner(unet, table, random_batches(unet, 1, 1, 8, 77))


def test_blocks_only_floors_of_each_config_unet(sd21):
    """The floors module prune/blocks.py reports (every removable block out, all width kept)."""
    assert blocks_only_floor(config_unet("config.yaml")[1]) == pytest.approx(0.678, abs=5e-4)
    assert blocks_only_floor(config_unet("micro.yaml")[1]) == pytest.approx(0.533, abs=5e-4)
    unet = sd21[0]
    groups = prunable_groups(unet)
    paper = mac_table(unet, groups, latent_size=64, text_len=77)  # config/sd21.yaml's sizes
    assert paper.full == pytest.approx(402.1e9, rel=1e-4)
    assert blocks_only_floor(paper) == pytest.approx(0.667, abs=5e-4)
    assert blocks_only_floor(sd21[1]) == pytest.approx(0.669, abs=5e-4)  # config/sd21_smoke.yaml: 8x8 latents


# --- the command -------------------------------------------------------------------------------

PARAMS = {"width_groups": 32, "latent_size": 8, "text_len": 16, "budget_tolerance": TOL, "static_seed": 0,
          "importance": {"batches": 2, "batch_size": 2, "seed": 0}}


@pytest.mark.parametrize("method,data,message", [
    ("taylor", False, "--method taylor measures importance .* pass --data"),
    ("blocks", False, "--method blocks measures importance .* pass --data"),
    ("magnitude", True, "--method magnitude uses no data: drop --data"),
    ("random", True, "--method random uses no data: drop --data"),
])
def test_prune_static_asks_for_data_exactly_for_the_data_driven_pruners(tmp_path, method, data, message):
    # the teacher does not exist either: the data problem is named first, before any model is read
    args = ["prune-static", "--base", str(tmp_path / "missing"), "--method", method, "--budget", "0.8",
            "--params", json.dumps(PARAMS), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=message):
        main(args + (["--data", str(tmp_path)] if data else []))
    assert not (tmp_path / "out").exists()


def test_prune_static_names_a_missing_finetune_table(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "base")
    with pytest.raises(SystemExit, match="finetune.csv is missing; run prepare-data"):
        main(["prune-static", "--base", str(tmp_path / "base"), "--method", "taylor", "--budget", "0.8",
              "--data", str(tmp_path / "nodata"), "--params", json.dumps(PARAMS), "--out", str(tmp_path / "out")])


def _data_dir(root: Path, n: int = 6) -> Path:
    """A data directory with a finetune.csv of n random 16 px images and captions."""
    rng = np.random.default_rng(0)
    (root / "images" / "finetune").mkdir(parents=True)
    rows = []
    for i in range(n):
        path = f"images/finetune/{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / path)
        rows.append({"image": path, "caption": f"a red square number {i}", "image_id": i})
    pd.DataFrame(rows).to_csv(root / "finetune.csv", index=False)
    return root


@pytest.mark.parametrize("method", NEEDS_DATA)
def test_data_driven_expert_equals_its_masked_twin(tiny_pipe, tmp_path, method):
    tiny_pipe.save_pretrained(tmp_path / "base")
    data = _data_dir(tmp_path / "data")
    out = tmp_path / f"expert-80-{method}"
    main(["prune-static", "--base", str(tmp_path / "base"), "--method", method, "--budget", "0.8",
          "--data", str(data), "--params", json.dumps(PARAMS), "--out", str(out)])
    info = json.loads((out / "expert.json").read_text())
    assert info["pruner"]["method"] == method
    assert info["pruner"]["importance"] == {"batches": 2, "batch_size": 2, "seed": 0, "resolution": 16, "data": str(data)}
    assert abs(info["mac_ratio"] - 0.8) <= TOL
    assert info["mac_ratio"] == pytest.approx(info["table_mac_ratio"], abs=1e-12)  # counted on the sliced expert
    expert = load_pipeline(out).unet
    base = load_pipeline(tmp_path / "base").unet
    code = load_code(out / "unet" / "arch_code.json").masks
    if method == "blocks":
        assert info["pruner"]["removed_blocks"] and all(code[name].item() == 0 for name in info["pruner"]["removed_blocks"])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    c = torch.randn(2, 5, base.config.cross_attention_dim, generator=gen)
    t = torch.tensor([10, 700])
    with torch.no_grad(), gated(base, code, width_groups=PARAMS["width_groups"]) as masked:
        want = masked(x, t, c).sample
    with torch.no_grad():
        got = expert(x, t, c).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
