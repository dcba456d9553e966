"""`report-base`: the teacher-quality figure (sample grid + per-style evaluator accuracies)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pruneforget.io import read_json
from pruneforget.report.save import save_figure
from pruneforget.world.tables import read_world
from pruneforget.report.teacher import per_style_table, teacher_quality_figure


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", required=True, type=Path, help="sample set directory of the teacher on held-out captions")
    p.add_argument("--scores", required=True, type=Path, help="judge JSON of that sample set")
    p.add_argument("--data", type=Path, default=None, help="data directory (its world.json marks the styles to be removed)")
    p.add_argument("--out", required=True, type=Path, help="output PDF (PNG and CSV are written beside it)")


def run(args: argparse.Namespace) -> None:
    score = read_json(args.scores)
    removed = read_world(args.data).get("remove_styles", []) if args.data else []
    fig = teacher_quality_figure(args.samples, score, removed)
    save_figure(fig, args.out, per_style_table(score))
    print(f"wrote {args.out}")
