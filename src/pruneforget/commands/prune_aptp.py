"""`prune-aptp`: learn APTP's prompt router and N architecture codes on a frozen teacher.

Writes router.safetensors + router_config.json, codes/code-<i>.json (each code's hard
architecture), experts.json (each code's MAC ratio, parameters and routed training prompts),
metrics.csv, cost.json and run_config.json. Resumable: a rerun after a crash continues from the last
checkpoint. Under `accelerate launch` each process trains on its share of the batch (DDP) and the
main process writes the outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from pruneforget.cli import parse_params
from pruneforget.io import command_fingerprint, resumable_work_path, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, type=Path, help="teacher pipeline directory (results/{scale}/base)")
    p.add_argument("--data", required=True, type=Path, help="data directory from prepare-data (uses train.csv)")
    p.add_argument("--budget", required=True, type=float, help="target share of the full UNet's MACs, in (0, 1] (e.g. 0.8)")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `prune` config section as JSON (width_groups, latent_size, text_len and the `aptp` keys)")
    p.add_argument("--out", required=True, type=Path, help="output directory (results/{scale}/aptp-{budget})")


def check_inputs(base: Path, data: Path, budget: float, prune: dict) -> None:
    """Everything that can be checked before loading a model; ValueError naming the problem and fix."""
    if "aptp" not in prune:
        raise ValueError("--params has no `aptp` subsection; pass the config's whole `prune` section (prune.aptp holds APTP's keys)")
    cfg = prune["aptp"]
    if not 0 < budget <= 1:
        raise ValueError(f"--budget {budget} is not a share of the full MACs in (0, 1]; e.g. 0.8 keeps 80%")
    if not (base / "model_index.json").exists():
        raise ValueError(f"teacher {base} is missing (no model_index.json); build it first (train-base or fetch-base)")
    if not (data / "train.csv").exists():
        raise ValueError(f"{data}/train.csv is missing; run prepare-data first")
    if cfg["experts"] < 1:
        raise ValueError(f"prune.aptp.experts is {cfg['experts']}; APTP needs at least one architecture code")
    for key in ("batch_size", "micro_batch_size"):
        if cfg.get(key, cfg["batch_size"]) < cfg["experts"]:
            raise ValueError(
                f"prune.aptp.{key} {cfg[key]} < experts {cfg['experts']}: Sinkhorn spreads each (micro-)batch "
                f"over the codes, so it needs at least one prompt per code; raise {key}"
            )
    if cfg["pretrain_steps"] > cfg["steps"]:
        raise ValueError(f"prune.aptp.pretrain_steps {cfg['pretrain_steps']} > steps {cfg['steps']}: the codes would never train")


def run(args: argparse.Namespace) -> None:
    prune = args.params
    try:
        check_inputs(args.base, args.data, args.budget, prune)
    except ValueError as exc:
        sys.exit(f"prune-aptp: {exc}")
    from pruneforget.models.load import load_pipeline
    from pruneforget.models.structure import make_arch_code, prunable_groups, save_code
    from pruneforget.prune.aptp_experts import describe_experts, route_counts
    from pruneforget.prune.aptp_losses import prunable_target
    from pruneforget.prune.aptp_train import train_aptp
    from pruneforget.prune.macs import mac_table
    from pruneforget.prune.router import GateLayout, PromptEncoder, Router, RouterConfig, save_router
    from pruneforget.train.loop import make_accelerator
    from pruneforget.train.run import run_work_dir
    from pruneforget.world.tables import read_table

    cfg, width_groups, latent = prune["aptp"], prune["width_groups"], prune["latent_size"]
    accelerator = make_accelerator(cfg.get("mixed_precision", "no"), resumable_work_path(args.out))
    device = accelerator.device
    pipe = load_pipeline(args.base, device=device)
    groups = prunable_groups(pipe.unet, width_groups)
    # Budgets are measured where every pruner measures them (prune.latent_size, prune.text_len),
    # whatever resolution APTP trains at.
    macs = mac_table(pipe.unet, groups, latent_size=latent, text_len=prune["text_len"])
    try:
        target = prunable_target(args.budget, macs.full, macs.prunable_full)
    except ValueError as exc:
        sys.exit(f"prune-aptp: {exc}")
    table = read_table(args.data, "train")
    encoder = PromptEncoder(cfg["prompt_encoder"]).to(device)
    config = RouterConfig(GateLayout.from_groups(groups), encoder.dim, cfg["experts"], cfg["prompt_encoder"],
                          offset=cfg["gate_offset"], temperature=cfg["gumbel_temperature"], gumbel=cfg["gumbel"],
                          depth_order=cfg["depth_order"])
    router = Router(config, seed=cfg["seed"])
    print(f"prune-aptp: {len(groups)} gate groups ({config.layout.dim} gates), {macs.full / 1e9:.3f} GMACs at "
          f"{latent}x{latent} latents, {macs.prunable_full / macs.full:.1%} prunable; budget {args.budget} -> "
          f"keep {target:.3f} of the prunable MACs")
    with run_work_dir(args.out, command_fingerprint(args), accelerator) as work:
        train_aptp(pipe, router, encoder, groups, macs, table, args.data, cfg, args.budget, work, accelerator)
        if not accelerator.is_main_process:
            return
        save_router(router, work)
        (work / "codes").mkdir(exist_ok=True)
        for i in range(config.n_codes):
            masks = {k: v.cpu() for k, v in router.code_masks(i).items()}
            save_code(work / "codes" / f"code-{i}.json", make_arch_code(pipe.unet, masks, width_groups))
        prompts = table["caption"].sample(n=min(cfg["route_prompts"], len(table)), random_state=cfg["seed"]).tolist()
        experts = describe_experts(pipe.unet, router, macs, width_groups, route_counts(router, encoder, prompts))
        write_json(work / "experts.json", {
            "budget": args.budget, "prunable_target": target, "full_macs": macs.full,
            "prunable_macs": macs.prunable_full, "latent_size": latent, "text_len": prune["text_len"], "routed_prompts": len(prompts), "experts": experts,
        })
        write_json(work / "run_config.json", {"params": prune, "base": str(args.base), "data": str(args.data), "budget": args.budget})
    for e in experts:
        print(f"  code {e['index']}: {e['mac_ratio']:.3f} of the MACs, {e['params'] / 1e6:.2f} M params, "
              f"{e['train_prompts']} prompts")
    print(f"prune-aptp: wrote {args.out}")
