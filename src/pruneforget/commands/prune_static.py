"""`prune-static`: prune the teacher to a MAC budget with a static pruner (magnitude or random).

Writes the same artifact as APTP's experts: a pipeline directory whose `unet/` holds the base
config, `arch_code.json` and the sliced weights, plus `expert.json` (MACs, ratio, parameters).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.cli import parse_params

REQUIRED = ("width_groups", "latent_size", "text_len", "budget_tolerance", "static_seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, type=Path, help="teacher pipeline directory (results/{scale}/base)")
    p.add_argument("--method", required=True, choices=["magnitude", "random"], help="static pruner")
    p.add_argument("--budget", required=True, type=float, help="share of the full UNet's MACs to keep, in (0, 1] (expert-80: 0.8)")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `prune` config section as JSON (width_groups, latent_size, text_len, budget_tolerance, static_seed)")
    p.add_argument("--out", required=True, type=Path, help="expert pipeline directory (results/{scale}/expert-{budget}-{method})")


def check_inputs(args: argparse.Namespace) -> None:
    """Fail with the problem and its fix before loading anything or writing anything."""
    from pruneforget.prune.static import check_budget

    try:
        check_budget(args.budget)
    except ValueError as exc:
        sys.exit(f"prune-static: {exc}")
    if not (args.base / "model_index.json").exists():
        sys.exit(f"prune-static: teacher {args.base} is missing (no model_index.json); build it first (rule train_base or fetch_base)")
    missing = [k for k in REQUIRED if k not in args.params]
    if missing:
        sys.exit(f"prune-static: --params lacks {missing}; pass the config's `prune` section")


def run(args: argparse.Namespace) -> None:
    check_inputs(args)
    import torch

    from pruneforget.io import atomic_dir, write_json
    from pruneforget.models.expert import extract_expert, write_pipeline
    from pruneforget.models.load import load_pipeline
    from pruneforget.models.structure import prunable_groups
    from pruneforget.prune.macs import mac_table
    from pruneforget.prune.static import static_code

    cfg = args.params
    pipe = load_pipeline(args.base)  # weights first, then slicing
    teacher = pipe.unet
    groups = prunable_groups(teacher, cfg["width_groups"])
    table = mac_table(teacher, groups, cfg["latent_size"], cfg["text_len"])
    try:
        code = static_code(args.method, teacher, table, args.budget, seed=cfg["static_seed"])
    except ValueError as exc:
        sys.exit(f"prune-static: {exc}")
    with torch.no_grad():
        ratio = float(table.ratio(code))
        macs = int(round(float(table.macs(code))))
    if abs(ratio - args.budget) > cfg["budget_tolerance"]:
        sys.exit(f"prune-static: reached {ratio:.3f} of the MACs, more than {cfg['budget_tolerance']} from the budget {args.budget}")
    pipe.unet = extract_expert(teacher, code, cfg["width_groups"])
    info = {
        "method": args.method,
        "budget": args.budget,
        "macs": macs,
        "full_macs": table.full,
        "mac_ratio": ratio,
        "params": sum(p.numel() for p in pipe.unet.parameters()),
        "full_params": sum(p.numel() for p in teacher.parameters()),
        "kept_units": _kept_by_kind(code, groups),
        "config": cfg,
        "base": str(args.base),
    }
    with atomic_dir(args.out) as tmp:
        write_pipeline(pipe, tmp)
        write_json(tmp / "expert.json", info)
    print(f"prune-static: {args.method} at {ratio:.3f} of the MACs ({macs / 1e9:.3f} G of {table.full / 1e9:.3f} G), "
          f"{info['params'] / 1e6:.2f} M of {info['full_params'] / 1e6:.2f} M UNet parameters -> {args.out}")


def _kept_by_kind(code, groups) -> dict[str, str]:
    """'kept/total' units per group kind, for the record."""
    out = {}
    for kind in sorted({g.kind for g in groups}):
        kept = sum(int(code[g.name].sum()) for g in groups if g.kind == kind)
        total = sum(g.units for g in groups if g.kind == kind)
        out[kind] = f"{kept}/{total}"
    return out
