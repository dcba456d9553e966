"""`prune-static`: prune the teacher to a MAC budget with a static pruner (`pruneforget.prune.METHODS`:
magnitude, random, taylor, blocks).

Writes the same artifact as APTP's experts: a pipeline directory whose `unet/` holds the base
config, `arch_code.json` and the sliced weights, plus `expert.json` (the pruner and its importance
settings, MACs and the MAC ratio counted on the sliced expert, parameters). taylor and blocks
(`NEEDS_DATA`) measure importance on D_f probe batches and need `--data`; the others refuse it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.cli import parse_params
from pruneforget.prune import METHODS, NEEDS_DATA

REQUIRED = ("width_groups", "latent_size", "text_len", "budget_tolerance", "static_seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, type=Path, help="teacher pipeline directory (results/{scale}/base)")
    p.add_argument("--method", required=True, choices=METHODS, help="static pruner")
    p.add_argument("--budget", required=True, type=float, help="share of the full UNet's MACs to keep, in (0, 1] (expert-80: 0.8)")
    p.add_argument("--data", type=Path, default=None,
                   help=f"data directory from prepare-data (finetune.csv = D_f): the probe batches of {' and '.join(NEEDS_DATA)}; "
                        "refused for the data-free pruners")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `prune` config section as JSON (width_groups, latent_size, text_len, budget_tolerance, "
                        "static_seed; importance for taylor and blocks)")
    p.add_argument("--out", required=True, type=Path, help="expert pipeline directory (results/{scale}/expert-{budget}-{method})")


def input_problem(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments that can be seen without loading anything, with its fix."""
    from pruneforget.prune.greedy import check_budget
    from pruneforget.prune.probe import IMPORTANCE_KEYS

    try:
        check_budget(args.budget)
    except ValueError as exc:
        return str(exc)
    if args.method in NEEDS_DATA and args.data is None:
        return (f"--method {args.method} measures importance on probe batches of D_f: pass --data "
                "results/{scale}/data (the prepare-data directory with finetune.csv)")
    if args.method not in NEEDS_DATA and args.data is not None:
        return f"--method {args.method} uses no data: drop --data (only {', '.join(NEEDS_DATA)} read it)"
    if not (args.base / "model_index.json").exists():
        return f"teacher {args.base} is missing (no model_index.json); build it first (rule train_base or fetch_base)"
    missing = [k for k in REQUIRED if k not in args.params]
    if missing:
        return f"--params lacks {missing}; pass the config's `prune` section"
    if args.method in NEEDS_DATA:
        if not (args.data / "finetune.csv").exists():
            return f"{args.data}/finetune.csv is missing; run prepare-data first"
        lacking = [k for k in IMPORTANCE_KEYS if k not in args.params.get("importance", {})]
        if lacking:
            return f"--params lacks importance.{lacking}; pass the config's whole `prune` section (prune.importance)"
    return None


def run(args: argparse.Namespace) -> None:
    problem = input_problem(args)
    if problem:
        sys.exit(f"prune-static: {problem}")
    import torch

    from pruneforget.io import atomic_dir, write_json
    from pruneforget.models.expert import extract_expert, write_pipeline
    from pruneforget.models.load import load_pipeline
    from pruneforget.models.structure import prunable_groups
    from pruneforget.prune.macs import count_macs, mac_table
    from pruneforget.prune.probe import probe_batches, probe_resolution
    from pruneforget.prune.select import prune_code

    cfg = args.params
    needs_data = args.method in NEEDS_DATA
    # Measuring importance runs the UNet (taylor: with gradients): on the GPU where the job has one.
    device = "cuda" if needs_data and torch.cuda.is_available() else "cpu"
    pipe = load_pipeline(args.base, device=device)  # weights first, then slicing
    teacher = pipe.unet
    groups = prunable_groups(teacher, cfg["width_groups"])
    table = mac_table(teacher, groups, cfg["latent_size"], cfg["text_len"])
    pruner = {"method": args.method}
    batches = None
    if needs_data:
        imp = cfg["importance"]
        batches = probe_batches(pipe, args.data, cfg["latent_size"], imp["batches"], imp["batch_size"], imp["seed"])
        pruner["importance"] = {**{k: imp[k] for k in ("batches", "batch_size", "seed")},
                                "resolution": probe_resolution(pipe, cfg["latent_size"]), "data": str(args.data)}
    try:
        code, record = prune_code(args.method, teacher, table, args.budget, seed=cfg["static_seed"], batches=batches,
                                  slack=cfg["budget_tolerance"])
    except ValueError as exc:
        sys.exit(f"prune-static: {exc}")
    pruner.update(record)
    with torch.no_grad():
        ratio = float(table.ratio(code))
    if abs(ratio - args.budget) > cfg["budget_tolerance"]:
        sys.exit(f"prune-static: reached {ratio:.3f} of the MACs, more than {cfg['budget_tolerance']} from the budget {args.budget}")
    pipe.to("cpu")
    pipe.unet = extract_expert(teacher, code, cfg["width_groups"])
    # Counted again on the sliced expert, not taken from the table: the record is what the expert costs.
    macs = sum(count_macs(pipe.unet, cfg["latent_size"], cfg["text_len"]).values())
    info = {
        "method": args.method,
        "pruner": pruner,
        "budget": args.budget,
        "macs": macs,
        "full_macs": table.full,
        "mac_ratio": macs / table.full,
        "table_mac_ratio": ratio,
        "params": sum(p.numel() for p in pipe.unet.parameters()),
        "full_params": sum(p.numel() for p in teacher.parameters()),
        "kept_units": _kept_by_kind(code, groups),
        "config": cfg,
        "base": str(args.base),
    }
    with atomic_dir(args.out) as tmp:
        write_pipeline(pipe, tmp)
        write_json(tmp / "expert.json", info)
    print(f"prune-static: {args.method} at {info['mac_ratio']:.3f} of the MACs ({macs / 1e9:.3f} G of {table.full / 1e9:.3f} G), "
          f"{info['params'] / 1e6:.2f} M of {info['full_params'] / 1e6:.2f} M UNet parameters -> {args.out}")


def _kept_by_kind(code, groups) -> dict[str, str]:
    """'kept/total' units per group kind, for the record."""
    out = {}
    for kind in sorted({g.kind for g in groups}):
        kept = sum(int(code[g.name].sum()) for g in groups if g.kind == kind)
        total = sum(g.units for g in groups if g.kind == kind)
        out[kind] = f"{kept}/{total}"
    return out
