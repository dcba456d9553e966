#!/usr/bin/env python
"""Compare two builds of the workflow file by file: every output must be byte-identical, except
the fields documented as timings.

    python workflow/scripts/compare_builds.py BUILD_A BUILD_B [results/tiny figures ...]

BUILD_A and BUILD_B are two checkouts that each ran the same target from nothing (for example
`snakemake --cores 2 --configfile config/micro.yaml paper_figures`). Prints the number of files
compared and every difference; exits 1 if there is one.

Timings, left out of the comparison: cost.json (seconds per step, peak memory), the `seconds`
column of a training run's metrics.csv, the `seconds` and `stats.seconds_per_step` entries of
unlearn.json, and the timing columns of the cost table (figures/table_cost.*), which draws them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import pandas as pd

TIMING_FILES = {"cost.json"}
TIMING_FIGURES = {"table_cost"}  # the cost table draws the timings; its step counts are compared


def normalised(path: Path) -> bytes:
    """The file's bytes, with documented timing fields removed."""
    data = path.read_bytes()
    if path.name == "metrics.csv":
        return pd.read_csv(io.BytesIO(data)).drop(columns=["seconds"], errors="ignore").to_csv(index=False).encode()
    if path.name == "unlearn.json":
        return json.dumps(_without_seconds(json.loads(data)), sort_keys=True).encode()
    if path.stem in TIMING_FIGURES and path.suffix == ".csv":
        table = pd.read_csv(io.BytesIO(data))
        keep = [c for c in table.columns if "second" not in c.lower() and "time" not in c.lower() and "memory" not in c.lower()]
        return table[keep].to_csv(index=False).encode()
    return data


def _without_seconds(value):
    """A JSON value without its timing entries (keys starting with `seconds`), at any depth."""
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if not k.startswith("seconds")}
    return value


def digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`, timings left out (drawn timing figures:
    their PDF and PNG are skipped, their CSV compared without the timing columns)."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name in TIMING_FILES or (path.stem in TIMING_FIGURES and path.suffix in {".pdf", ".png"}):
            continue
        out[str(path.relative_to(root))] = hashlib.sha256(normalised(path)).hexdigest()
    return out


def compare(a: Path, b: Path) -> list[str]:
    """Differences between two trees: files only in one, files whose contents differ."""
    da, db = digests(a), digests(b)
    problems = [f"only in {a}: {k}" for k in sorted(set(da) - set(db))]
    problems += [f"only in {b}: {k}" for k in sorted(set(db) - set(da))]
    problems += [f"differs: {k}" for k in sorted(set(da) & set(db)) if da[k] != db[k]]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("paths", nargs="*", default=["results", "figures"], help="trees to compare (default: results figures)")
    args = parser.parse_args(argv)
    problems, files = [], 0
    for sub in args.paths:
        problems += compare(args.a / sub, args.b / sub)
        files += len(digests(args.a / sub))
    for line in problems:
        print(line)
    print(f"{files} files compared under {', '.join(args.paths)}: "
          + ("identical (timings excepted)" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
