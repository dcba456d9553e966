"""The cost table: time and memory of bilevel against two-stage training (open question 4).

Every training run writes `cost.json` (train/loop.py's `cost_summary`): under `objectives`, one
entry per step kind (`ft` for fine-tuning, `esd` for ESD, `lower` and `upper` for bilevel) with its
steps, seconds per step (also steady-state, without the first step's set-up) and peak memory in
bytes. `read_costs` turns each into `{kind: {"seconds_per_step": s, "peak_memory_mb": MB, "steps": n}}`,
seconds per step being the steady-state value where the run has one.

Per run and kind the table gives seconds per step, peak memory, steps and their product; a run
with several kinds also gets `per <last kind> step` (all its time divided by the last kind's steps:
one bilevel iteration, K lower steps plus one upper step) and a `total`; `totals` add
whole runs (fine-tuning + ESD = the two-stage pipeline). Mean, std, n over seeds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from pruneforget.io import read_json
from pruneforget.report.scores import not_built_note, row_models, seed_stats

COST_COLUMNS = ["row", "model", "kind", "seconds_per_step", "seconds_per_step_std", "peak_memory_mb",
                "peak_memory_mb_std", "steps", "total_seconds", "total_seconds_std", "n", "note"]


def read_costs(run_dirs: list[str | os.PathLike]) -> dict[str, dict]:
    """Each run directory's cost.json as `{kind: {seconds_per_step, peak_memory_mb, steps}}`, keyed
    by the run's model name (its directory name)."""
    return {Path(d).name: objective_costs(read_json(Path(d) / "cost.json")) for d in run_dirs}


def run_seconds(run_dir: str | os.PathLike) -> float | None:
    """A run's training time in seconds: its cost.json's objectives (every training loop: ESD,
    fine-tuning, bilevel) added up, else the `seconds` of unlearn.json (UCE's edit, ConceptPrune's
    mask: no loop); None for a directory with neither."""
    run = Path(run_dir)
    if (run / "cost.json").exists():
        return float(sum(c["seconds_total"] for c in read_json(run / "cost.json").get("objectives", {}).values()))
    if (run / "unlearn.json").exists():
        return float(read_json(run / "unlearn.json")["seconds"])
    return None


def objective_costs(cost: dict) -> dict[str, dict]:
    """A cost.json's objectives in the table's units: steady-state seconds per step where measured
    (a run's first step of each kind pays one-time set-up), peak memory in MiB."""
    out = {}
    for kind, c in cost.get("objectives", {}).items():
        steady = c.get("seconds_per_step_steady")
        out[kind] = {"seconds_per_step": steady if steady is not None else c["seconds_per_step"],
                     "peak_memory_mb": c["peak_memory_bytes"] / 2**20, "steps": c["steps"]}
    return out


def run_cost(cost: dict, kinds: list[str]) -> dict[str, dict]:
    """Per kind of one run: seconds_per_step, peak_memory_mb, steps, total_seconds; plus
    `per {kinds[-1]} step` for several kinds and `total` (KeyError names a missing kind)."""
    out = {}
    for kind in kinds:
        c = cost[kind]
        out[kind] = {"seconds_per_step": c["seconds_per_step"], "peak_memory_mb": c["peak_memory_mb"],
                     "steps": c["steps"], "total_seconds": c["seconds_per_step"] * c["steps"]}
    total = sum(v["total_seconds"] for v in out.values())
    peak = max(v["peak_memory_mb"] for v in out.values())
    if len(kinds) > 1:
        last = out[kinds[-1]]["steps"]
        out[f"per {kinds[-1]} step"] = {"seconds_per_step": total / last if last else math.nan,
                                        "peak_memory_mb": peak, "steps": last, "total_seconds": total}
    out["total"] = {"seconds_per_step": math.nan, "peak_memory_mb": peak, "steps": math.nan, "total_seconds": total}
    return out


def _row(label: str, model: str, kind: str, per_seed: list[dict]) -> dict:
    stats = {q: seed_stats([p[q] for p in per_seed]) for q in ("seconds_per_step", "peak_memory_mb", "total_seconds")}
    steps = seed_stats([p["steps"] for p in per_seed])["mean"]
    return {"row": label, "model": model, "kind": kind,
            "seconds_per_step": stats["seconds_per_step"]["mean"], "seconds_per_step_std": stats["seconds_per_step"]["std"],
            "peak_memory_mb": stats["peak_memory_mb"]["mean"], "peak_memory_mb_std": stats["peak_memory_mb"]["std"],
            "steps": steps, "total_seconds": stats["total_seconds"]["mean"],
            "total_seconds_std": stats["total_seconds"]["std"], "n": len(per_seed), "note": ""}


def cost_table(costs: dict[str, dict], rows: list[dict], totals: list[dict], seeds: list[int]) -> pd.DataFrame:
    """Rows `{label, model, kinds}`; totals `{label, rows: [row labels]}` (seeds paired across
    runs). COST_COLUMNS, then one note per run not given or lacking a kind."""
    out, notes = [], []
    per_row: dict[str, dict[int | None, dict]] = {}
    for row in rows:
        by_seed = {}
        for seed, model in row_models(row["model"], seeds):
            if model not in costs:
                notes.append(not_built_note(model))
                continue
            missing = [k for k in row["kinds"] if k not in costs[model]]
            if missing:
                notes.append(not_built_note(model, f"no {', '.join(missing)} in cost.json"))
                continue
            by_seed[seed] = run_cost(costs[model], row["kinds"])
        per_row[row["label"]] = by_seed
        if by_seed:
            for kind in next(iter(by_seed.values())):
                if kind == "total" and len(row["kinds"]) == 1:
                    continue  # the one kind's row already holds the run's total
                out.append(_row(row["label"], row["model"], kind, [c[kind] for c in by_seed.values()]))
    for total in totals:
        parts = [per_row.get(label, {}) for label in total["rows"]]
        common = sorted(set.intersection(*(set(p) for p in parts)), key=lambda s: -1 if s is None else s) if parts else []
        per_seed = [{"seconds_per_step": math.nan, "steps": math.nan,
                     "peak_memory_mb": max(p[s]["total"]["peak_memory_mb"] for p in parts),
                     "total_seconds": sum(p[s]["total"]["total_seconds"] for p in parts)} for s in common]
        if per_seed:
            out.append(_row(total["label"], "+".join(total["rows"]), "total", per_seed))
        else:
            notes.append(f"not built: {total['label']} (no seed with every part)")
    nan = {c: math.nan for c in COST_COLUMNS}
    rows_out = out + [{**nan, "row": "", "model": "", "kind": "", "n": 0, "note": n} for n in dict.fromkeys(notes)]
    return pd.DataFrame(rows_out, columns=COST_COLUMNS)


def cost_cells(frame: pd.DataFrame) -> tuple[list[str], list[str], list[list[str]]]:
    """(row labels, column labels, cell texts) of the cost table's drawing."""
    cells = frame[frame["note"] == ""]

    def pm(mean: float, std: float, digits: int) -> str:
        if math.isnan(mean):
            return ""
        return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")

    labels = [f"{r} / {k}" for r, k in zip(cells["row"], cells["kind"])]
    text = [[pm(r.seconds_per_step, r.seconds_per_step_std, 3), pm(r.peak_memory_mb, r.peak_memory_mb_std, 0),
             "" if math.isnan(r.steps) else f"{r.steps:.0f}", pm(r.total_seconds, r.total_seconds_std, 1), str(r.n)]
            for r in cells.itertuples()]
    return labels, ["s / step", "peak memory (MB)", "steps", "total (s)", "seeds"], text
