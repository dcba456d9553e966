"""One entry point: `python -m pruneforget <command> ...`; every Snakemake rule calls one command.

Each command lives in `pruneforget/commands/<name>.py` and defines `add_arguments(parser)` and
`run(args)`. Modules are imported only when their command runs, so `--help` is instant.
Commands take their stage's config section as `--params JSON` (the rule passes it; the code
never re-reads the config file) and write their outputs atomically.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from pruneforget import forkserver

# command name -> (module under pruneforget.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare-data": ("prepare_data", "build the tiny world or the MS-COCO tables (train, fine-tune, val, prompt sets)"),
    "train-evaluator": ("train_evaluator", "train the tiny world's ground-truth style/shape/colour classifier"),
    "train-vae": ("train_vae", "train the tiny world's AutoencoderKL on world images"),
    "train-base": ("train_base", "train the tiny Stable-Diffusion-shaped teacher (UNet, DDPM loss, caption dropout)"),
    "fetch-base": ("fetch_base", "copy a pretrained pipeline (hub id or local dir, e.g. SD 2.1) into the workflow"),
    "sample": ("sample", "generate images for a prompt set: PNGs plus a manifest"),
    "report-base": ("report_base", "teacher quality figure: sample grid and evaluator accuracies"),
    "report": ("report", "one table or figure of the paper (figures/NAME.pdf + PNG + CSV) from scores, runs, samples"),
    "finetune": ("finetune", "fine-tune a (pruned) student with distillation (Eq. 8) or the diffusion loss, with periodic evaluation"),
    "score": ("score", "one metric of a sample set or model as a score JSON (CLIP, CP, CSD, FID, NudeNet, tiny judges)"),
    "fid-reference": ("fid_reference", "clean-fid statistics of the COCO val2017 images (the FID reference, sd21)"),
    "fetch-prompts": ("fetch_prompts", "download an NSFW prompt set (I2P, MMA-Diffusion, Ring-A-Bell), verify, normalise"),
    "prune-static": ("prune_static", "prune the teacher to a MAC budget with a static pruner (magnitude, random, taylor, blocks)"),
    "prune-aptp": ("prune_aptp", "APTP: learn the prompt router and N architecture codes on the frozen teacher"),
    "extract-expert": ("extract_expert", "slice the APTP code closest to a MAC budget out of the teacher as a pipeline"),
    "unlearn": ("unlearn", "remove a setting's concepts from a model: --method uce|conceptprune|esdx|esdu|esd (closed-form edit / skilled-weight pruning / ESD fine-tuning)"),
    "make-standins": ("make_standins", "build local stand-ins for SD 2.1, COCO, CLIP, CSD, mpnet and the NSFW prompt files (sd21 smoke)"),
    "bilevel": ("bilevel", "fine-tune a pruned expert and remove concepts in one run (Algorithm 1; --variant code: the authors' code)"),
    "warm": ("warm", "run a command (snakemake, dvc repro) whose pruneforget jobs fork from one warm interpreter"),
}


def parse_params(text: str) -> dict:
    """Parse a `--params` JSON object, naming the problem if it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--params must be a JSON object ({exc}); rules pass a config section as JSON") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object, e.g. '{\"steps\": 100}'")
    return value


def add_eval_argument(p: argparse.ArgumentParser) -> None:
    """`--no-eval`: train without the periodic evaluations (no eval.csv). The workflow passes it
    to every run no curve figure plots (report.specs.evaluated_runs)."""
    p.add_argument("--no-eval", action="store_true", help="no periodic evaluation (eval_every 0): no figure reads it")
    p.add_argument("--fid-reference", type=Path, default=None,
                   help="sd21: FID statistics directory (rule fid_reference_stats) the periodic FID is taken "
                        "against, with its extractor; finetune.fid_reference, when set, wins")


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pruneforget", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == load:
            importlib.import_module(f"pruneforget.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a command; in a `warm` run, in a child of the warm interpreter (see forkserver.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    address = os.environ.get(forkserver.ENV_VAR)
    if address and "warm" not in argv[:1]:
        try:
            sys.exit(forkserver.run_remote(address, argv))
        except forkserver.Unavailable as exc:
            print(f"pruneforget: running without the warm interpreter ({exc})", file=sys.stderr)
    run_command(argv)


def run_command(argv: list[str]) -> None:
    """Parse `argv` and run its command in this process."""
    name = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(load=name).parse_args(argv)
    importlib.import_module(f"pruneforget.commands.{COMMANDS[args.command][0]}").run(args)
