"""`python -m pruneforget warm -- snakemake --cores 2 ...`: run a workflow whose jobs fork from one
warm interpreter instead of importing torch and diffusers each (forkserver.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pruneforget import forkserver
from pruneforget.cli import COMMANDS, run_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                        help="the command to run, e.g. `-- snakemake --cores 2` or `-- dvc repro`")


def run(args: argparse.Namespace) -> None:
    src = Path("src").resolve()
    if (src / "pruneforget").is_dir() and str(src) not in sys.path:
        # Workflow jobs import the package from the checkout's src/ (the Snakefile's shell prefix,
        # dvc.yaml's commands); the server must import the same files, or every job is refused.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
        os.execv(sys.executable, [sys.executable, "-m", "pruneforget", *sys.argv[1:]])
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise SystemExit("warm: name the command to run after `--`, e.g. "
                         "`python -m pruneforget warm -- snakemake --cores 2`")
    modules = [f"pruneforget.commands.{module}" for module, _ in COMMANDS.values()]
    sys.exit(forkserver.warm(command, modules, run_command))
