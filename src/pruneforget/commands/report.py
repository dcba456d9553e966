"""`report`: one table or figure of the paper (figures/NAME.pdf, with its PNG and CSV beside it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.cli import parse_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pruneforget.report.specs import KINDS

    p.add_argument("--figure", required=True, choices=sorted(KINDS), help="which table or figure to draw")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the figure's resolved spec as JSON (rules pass report.specs.resolve_figure of the figures section)")
    p.add_argument("--scores", nargs="*", default=[], type=Path, help="score JSONs (results/{scale}/scores/{model}/{promptset}/{metric}.json)")
    p.add_argument("--runs", nargs="*", default=[], type=Path, help="training run directories (eval.csv, cost.json)")
    p.add_argument("--samples", nargs="*", default=[], type=Path, help="sample set directories (PNGs + manifest.csv)")
    p.add_argument("--out", required=True, type=Path, help="output PDF (PNG and CSV are written beside it)")


def run(args: argparse.Namespace) -> None:
    from pruneforget.report.build import build_figure
    from pruneforget.report.save import save_figure

    if args.params.get("figure") != args.figure:
        sys.exit(f"report: --params is the spec of {args.params.get('figure')!r}, not of --figure {args.figure}; "
                 "pass report.specs.resolve_figure(config, NAME) for the same NAME")
    missing = [str(p) for p in [*args.scores, *args.runs, *args.samples] if not p.exists()]
    if missing:
        sys.exit(f"report: inputs do not exist: {missing[:5]}{' ...' if len(missing) > 5 else ''}; build them first")
    fig, table = build_figure(args.params, args.scores, args.runs, args.samples)
    save_figure(fig, args.out, table)
    notes = int((table["note"] != "").sum()) if "note" in table else 0
    print(f"report: wrote {args.out} ({len(table)} CSV rows, {notes} notes)")
