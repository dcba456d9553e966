"""Where the tiny paper's time goes: build it from an empty results/ in phases and print the wall
time of each phase, the job time per stage (from Snakemake's benchmark files) and each command's
start-up cost (import, before any work).

    python workflow/scripts/bench_tiny.py                      # teacher, then Table 1, then every figure
    python workflow/scripts/bench_tiny.py --continue --phase table1=figures/table1.pdf
    python workflow/scripts/bench_tiny.py --summary            # only the breakdown of benchmarks/ as it is
    python workflow/scripts/bench_tiny.py --warm --configfile config/micro.yaml --phase micro=all
    python -m pruneforget make-standins && python workflow/scripts/bench_tiny.py --warm \
        --configfile config/sd21_smoke.yaml --phase smoke=paper_figures   # the sd21 smoke

--warm runs each phase under `python -m pruneforget warm --` (jobs fork from one interpreter that
imported torch and diffusers once; forkserver.py).

A phase is one `snakemake --cores N TARGETS` call; the totals add the phases up, so "Table 1 from
nothing" is teacher + table1 and "every figure from nothing" adds the last phase. Refuses to start
on a non-empty results/ (the totals would not be "from nothing") unless --continue.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

DEFAULT_PHASES = [
    ("teacher", "results/tiny/base results/tiny/evaluator"),
    ("table1", "figures/table1.pdf"),
    ("paper", "paper_figures"),
]

# rule -> stage of the paper's pipeline (anything else: "other")
STAGES = {
    "prepare_data": "world", "train_evaluator": "evaluator", "train_vae": "teacher VAE", "train_base": "teacher UNet",
    "prune_aptp": "pruning", "extract_expert": "pruning", "prune_static": "pruning",
    "finetune": "fine-tuning", "unlearn": "two-stage unlearning", "bilevel": "bilevel",
    "sample": "sampling", "sample_bundle": "sampling", "score": "scoring", "score_bundle": "scoring",
}

# command -> the modules a job of it imports before any work (the CLI, the command, what its run()
# imports): its start-up, paid once per job
COMMANDS = {
    "sample": ["pruneforget.cli", "pruneforget.commands.sample"],
    "score": ["pruneforget.cli", "pruneforget.commands.score", "pruneforget.metrics.scores_tiny"],
    "finetune": ["pruneforget.cli", "pruneforget.commands.finetune"],
    "report": ["pruneforget.cli", "pruneforget.commands.report", "pruneforget.report.build"],
}


def read_benchmarks(root: Path, since: float = 0.0) -> list[dict]:
    """One row per benchmark TSV (rule = first directory under benchmarks/<scale>/, or the file
    stem for rules without wildcards) written at or after `since`."""
    rows = []
    for path in sorted(root.glob("*/**/*.tsv")):
        if path.stat().st_mtime < since:
            continue
        parts = path.relative_to(root).parts  # (scale, rule, ..., file) or (scale, file)
        rule = parts[1] if len(parts) > 2 else path.stem
        with path.open() as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        rows.append({"rule": rule, "seconds": float(record["s"]), "cpu": float(record.get("cpu_time") or 0)})
    return rows


def stage_table(rows: list[dict]) -> list[tuple[str, int, float, float]]:
    """(stage, jobs, job seconds, mean seconds per job), largest first."""
    jobs, secs = defaultdict(int), defaultdict(float)
    for r in rows:
        stage = STAGES.get(r["rule"], "report" if r["rule"].startswith("report") else "other")
        jobs[stage] += 1
        secs[stage] += r["seconds"]
    return sorted(((s, jobs[s], secs[s], secs[s] / jobs[s]) for s in jobs), key=lambda t: -t[2])


def start_up_seconds(modules: list[str], repeats: int = 3) -> float:
    """Median wall time of a fresh Python importing `modules` (what every job of a command pays first)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import " + ", ".join(modules)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def fmt(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def print_stages(title: str, rows: list[dict]) -> None:
    print(f"\n{title}: {len(rows)} jobs, {fmt(sum(r['seconds'] for r in rows))} of job time")
    print(f"  {'stage':24s} {'jobs':>5s} {'job time':>16s} {'per job':>9s}")
    for stage, n, total, mean in stage_table(rows):
        print(f"  {stage:24s} {n:5d} {fmt(total):>16s} {mean:8.1f}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--phase", action="append", metavar="NAME=TARGETS",
                   help="a phase and its space-separated targets (repeatable; default: teacher, table1, paper)")
    p.add_argument("--continue", dest="cont", action="store_true", help="allow a non-empty results/")
    p.add_argument("--summary", action="store_true", help="only print the breakdown of the benchmark files there are")
    p.add_argument("--benchmarks", type=Path, default=Path("benchmarks"))
    p.add_argument("--configfile", help="another config than config/config.yaml (its scale's results/ must be empty)")
    p.add_argument("--warm", action="store_true", help="run each phase under `python -m pruneforget warm --`")
    args = p.parse_args()

    if args.summary:
        print_stages("all benchmark files", read_benchmarks(args.benchmarks))
    else:
        results = Path("results")
        if not args.cont and results.exists() and any(results.iterdir()):
            sys.exit("bench_tiny: results/ is not empty, so the totals would not be from nothing: move it away "
                     "(or pass --continue to time the remaining phases anyway)")
        phases = [tuple(ph.split("=", 1)) for ph in args.phase] if args.phase else DEFAULT_PHASES
        walls = []
        for name, targets in phases:
            t0, since = time.perf_counter(), time.time()
            config = ["--configfile", args.configfile] if args.configfile else []
            warm = [sys.executable, "-m", "pruneforget", "warm", "--"] if args.warm else []
            cmd = [*warm, "snakemake", "--cores", str(args.cores), *config, "--", *targets.split()]
            print(f"\n== phase {name}: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls.append((name, time.perf_counter() - t0))
            print(f"phase {name}: {fmt(walls[-1][1])} wall", flush=True)
            print_stages(f"phase {name}", read_benchmarks(args.benchmarks, since))
        print("\ncumulative wall time from the first phase:")
        total = 0.0
        for name, wall in walls:
            total += wall
            print(f"  through {name:12s} {fmt(total)}")

    print("\nstart-up per job (a fresh Python importing the command, median of 3):")
    for command, modules in COMMANDS.items():
        print(f"  {command:10s} {start_up_seconds(modules):5.2f} s")


if __name__ == "__main__":
    main()
