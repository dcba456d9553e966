"""`extract-expert`: slice the APTP code closest to a MAC budget out of the teacher as a standalone pipeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.io import atomic_dir, read_json, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aptp", required=True, type=Path, help="prune-aptp output directory (experts.json, codes/)")
    p.add_argument("--base", required=True, type=Path, help="the teacher pipeline the APTP run pruned")
    p.add_argument("--target", required=True, type=float, help="wanted share of the full UNet's MACs, e.g. 0.8")
    p.add_argument("--tolerance", type=float, default=0.03, help="largest accepted |MAC ratio - target| (prune.budget_tolerance; default 0.03)")
    p.add_argument("--out", required=True, type=Path, help="expert pipeline directory (results/{scale}/expert-{budget})")


def run(args: argparse.Namespace) -> None:
    from pruneforget.prune.aptp_experts import pick_expert

    experts_file = args.aptp / "experts.json"
    if not experts_file.exists():
        sys.exit(f"extract-expert: {experts_file} is missing; run prune-aptp first")
    if not (args.base / "model_index.json").exists():
        sys.exit(f"extract-expert: teacher {args.base} is missing (no model_index.json)")
    info = read_json(experts_file)
    try:
        chosen = pick_expert(info["experts"], args.target, args.tolerance)
    except ValueError as exc:
        sys.exit(f"extract-expert: {exc}")

    from pruneforget.models.expert import extract_expert, write_pipeline
    from pruneforget.models.load import load_pipeline
    from pruneforget.models.structure import load_code

    arch = load_code(args.aptp / "codes" / f"code-{chosen['index']}.json")
    pipe = load_pipeline(args.base)
    try:
        arch.check_base(pipe.unet)
    except ValueError as exc:
        sys.exit(f"extract-expert: {exc}")
    pipe.unet = extract_expert(pipe.unet, arch.masks, arch.width_groups)
    params = sum(p.numel() for p in pipe.unet.parameters())
    with atomic_dir(args.out) as work:
        write_pipeline(pipe, work)
        write_json(work / "expert.json", {
            "code_index": chosen["index"], "mac_ratio": chosen["mac_ratio"], "prunable_ratio": chosen["prunable_ratio"],
            "macs": chosen["macs"], "params": params, "target": args.target, "tolerance": args.tolerance,
            "aptp": str(args.aptp), "base": str(args.base),
        })
    print(f"extract-expert: code {chosen['index']} ({chosen['mac_ratio']:.3f} of the MACs, {params / 1e6:.2f} M params) -> {args.out}")
