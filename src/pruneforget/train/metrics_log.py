"""Append-only CSV metrics log that survives resume (rows past the resumed step are dropped)."""

from __future__ import annotations

import csv
from pathlib import Path


class CsvLog:
    """Log rows of scalars to a CSV; on resume, keeps only rows with step <= `resume_step`."""

    def __init__(self, path: Path, fields: list[str], resume_step: int = 0):
        self.path, self.fields = Path(path), ["step", *fields]
        rows = []
        if resume_step and self.path.exists():
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, step: int, **values: float) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({"step": step, **values})
