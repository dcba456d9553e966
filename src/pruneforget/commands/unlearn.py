"""`unlearn`: remove a setting's concepts from a model with one method (UCE, ConceptPrune, ...).

Writes OUT as a pipeline directory plus `unlearn.json` (method, setting, concepts, seconds, what
changed), atomically. A bad config section, an unknown concept word or a model without
cross-attention fails before any work and before anything is written.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pruneforget.cli import parse_params
from pruneforget.io import atomic_dir, write_json
from pruneforget.models.expert import write_pipeline
from pruneforget.models.load import load_pipeline
from pruneforget.unlearn import METHODS, method_module
from pruneforget.unlearn.knobs import apply_knob, check_knob, family_of, parse_flag
from pruneforget.unlearn.concepts import UnlearnInputError, validate_concepts
from pruneforget.unlearn.prompts import concept_set
from pruneforget.unlearn.runs import BASE_SETTINGS as SETTINGS



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, choices=sorted(METHODS), help="unlearning method")
    p.add_argument("--model", required=True, type=Path, help="pipeline directory to unlearn from (the distilled model)")
    p.add_argument("--data", type=Path, default=None, help="data directory (its world.json gives the tiny world's prompt subjects)")
    p.add_argument("--setting", required=True, choices=SETTINGS, help="which concept set of the config: artists or global")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `unlearn` config section as JSON: the setting's concepts and the method's parameters")
    p.add_argument("--seed", type=int, default=0, help="seed of anything the method samples")
    p.add_argument("--knob", type=_knob, default=None, metavar="NAME=VALUE",
                   help="override one config value of the method (a strength knob of unlearn/knobs.py, e.g. "
                        "steps=200 sets unlearn.esd.steps; a frontier run)")
    p.add_argument("--out", required=True, type=Path, help="output pipeline directory")


def _knob(text: str) -> tuple[str, int | float]:
    try:
        return parse_flag(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run(args: argparse.Namespace) -> None:
    cfg = args.params
    if args.knob:  # the run's strength knob replaces one value of the section, before any check reads it
        try:
            check_knob(args.knob[0], family_of(args.method))
            cfg = apply_knob(cfg, "unlearn", *args.knob)
        except ValueError as exc:
            raise SystemExit(f"unlearn: {exc}") from exc
    try:
        module = method_module(args.method)
        # A module serving several methods (ESD: esdx, esdu, esd) reads one section and resolves
        # the method's and setting's parameters from it.
        section = getattr(module, "SECTION", args.method)
        for key in (args.setting, section):
            if key not in cfg:
                raise UnlearnInputError(f"the unlearn config section has no {key!r} entry (has {sorted(cfg)}); add unlearn.{key}")
        params = cfg[section]
        if hasattr(module, "method_params"):
            params = module.method_params(params, args.method, args.setting)
        if hasattr(module, "check_params"):
            module.check_params(params)
        concepts = concept_set(cfg[args.setting], args.data)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        pipe = load_pipeline(args.model, device=device)
        validate_concepts(pipe, concepts)
    except UnlearnInputError as exc:
        raise SystemExit(f"unlearn: {exc}") from exc

    start = time.perf_counter()
    with atomic_dir(args.out) as tmp:
        pipe, stats = module.unlearn(pipe, concepts, params, seed=args.seed, work_dir=tmp)
        seconds = time.perf_counter() - start
        write_pipeline(pipe, tmp)  # not save_pipeline: that would replace tmp and drop the run records
        write_json(tmp / "unlearn.json", {
            "method": args.method,
            "setting": args.setting,
            "concepts": list(concepts.erase),
            "guide": concepts.guide,
            "preserve": list(concepts.preserve),
            "params": params,
            "seed": args.seed,
            "knob": dict([args.knob]) if args.knob else {},
            "model": str(args.model),
            "device": device,
            "seconds": round(seconds, 3),
            "stats": stats,
        })
    print(f"{args.method} removed {list(concepts.erase)} from {args.model} in {seconds:.1f} s on {device}; wrote {args.out}")
