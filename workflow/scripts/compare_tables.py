"""Old against new: two builds of a table's CSV (figures/<table>.csv) side by side, cell by cell.

    python workflow/scripts/compare_tables.py OLD/table1.csv figures/table1.csv

Prints each (row, column) with both means ± std over seeds and the difference in units of the
larger seed-to-seed std (`-` where a cell has one seed, so no spread). A speed-up that changes
numbers should leave every cell within about 2 of those units.
"""

from __future__ import annotations

import math
import sys

import pandas as pd


def side_by_side(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per (row, column) present in both: old/new mean and std, and |new - old| / max std."""
    keys = ["row", "column"]
    both = old.merge(new, on=keys, suffixes=("_old", "_new"), sort=False)
    spread = both[["std_old", "std_new"]].max(axis=1)
    both["in_stds"] = (both["mean_new"] - both["mean_old"]).abs() / spread.where(spread > 0)
    return both[keys + ["mean_old", "std_old", "mean_new", "std_new", "in_stds"]]


def _cell(mean: float, std: float) -> str:
    return f"{mean:.3g}" if math.isnan(std) else f"{mean:.3g} ± {std:.2g}"


def main(old_path: str, new_path: str) -> None:
    table = side_by_side(pd.read_csv(old_path), pd.read_csv(new_path))
    print(f"{'row':26s} {'column':22s} {'old':>16s} {'new':>16s} {'|diff|/std':>10s}")
    for r in table.itertuples():
        k = "-" if math.isnan(r.in_stds) else f"{r.in_stds:.1f}"
        print(f"{r.row:26s} {r.column:22s} {_cell(r.mean_old, r.std_old):>16s} {_cell(r.mean_new, r.std_new):>16s} {k:>10s}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
