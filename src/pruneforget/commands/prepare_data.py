"""`prepare-data`: build the data directory of a scale (tiny procedural world or MS-COCO tables)."""

from __future__ import annotations

import argparse
import sys

from pruneforget.cli import parse_params
from pruneforget.io import atomic_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=parse_params, required=True,
                        help="the `world` config section as JSON; world.kind picks the builder (tiny or coco)")
    parser.add_argument("--out", required=True, help="data directory to write (replaced atomically)")


def run(args: argparse.Namespace) -> None:
    kind = args.params.get("kind")
    if kind == "tiny":
        from pruneforget.world.build import build_tiny
        from pruneforget.world.spec import WorldConfigError, parse_world

        try:
            parse_world(args.params)  # fail on bad config before creating anything
        except WorldConfigError as exc:
            sys.exit(f"prepare-data: {exc}")
        build = build_tiny
    elif kind == "coco":
        from pruneforget.world.coco import build_coco

        build = build_coco
    else:
        sys.exit(f"prepare-data: world.kind: got {kind!r}; set tiny (procedural world) or coco (MS-COCO 2017)")
    # Builders write into a temporary directory renamed to --out only on success.
    try:
        with atomic_dir(args.out) as tmp:
            build(args.params, tmp)
    except ValueError as exc:
        if kind == "tiny":
            raise  # the tiny config was validated above: this is a bug, keep its traceback
        sys.exit(f"prepare-data: {exc}")
    print(f"prepare-data: wrote {args.out}")
