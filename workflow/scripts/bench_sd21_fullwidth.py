"""Peak memory and time of every paper-scale training job at SD 2.1's real widths, on this machine.

The sd21 smoke (config/sd21_smoke.yaml) with the stand-ins built at full width
(`make-standins --full-width`: the 865,910,724-parameter UNet, SD 2.1's VAE and 23-layer
OpenCLIP-H text encoder, random weights) and an overlay that runs every training job for 2
steps (bilevel 3) at 64 px, one process each (a GPU's share of an 8-GPU job). Snakemake runs the jobs in a
copy of the repository and records each one's wall time and peak resident memory in its
`benchmark:` file; this script prints them beside `config/sd21.yaml`'s `resources.mem_mb`.

    python workflow/scripts/bench_sd21_fullwidth.py [--work /tmp/fullwidth] [--cores 2]

CPU memory in float32 is an upper bound of a GPU job's weights, gradients and optimizer state
under bf16 mixed precision (whose master weights stay float32); activations at 512 px are not
in it (64 px here).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from repo_copy import copy_repo  # noqa: E402  (the tests' "fresh clone" copy)

SCALE = "sd21_smoke"
# The jobs measured: rule group (config resources key) -> output under results/sd21_smoke/.
TARGETS = {
    "aptp": "aptp-80",
    "prune": "expert-80",
    "finetune": "ft-80-kd-pruned-s0",
    "unlearn": "esdx-artists-s0",
    "bilevel": "bilevel-artists-s0",
}
# Rule (the benchmark file's first path part) -> its `resources` group in the config.
GROUPS = {"prune_aptp": "aptp", "extract_expert": "prune", "finetune": "finetune", "unlearn": "unlearn",
          "bilevel": "bilevel", "fetch_base": "base", "prepare_data": "data", "fid_reference_stats": "score"}
OVERLAY = {
    "resources": {"finetune": {"gpu": 1}, "bilevel": {"gpu": 1}},  # one process: a GPU's share
    "prune": {"budget_tolerance": 1.0, "aptp": {"steps": 2, "checkpoint_every": 2, "log_every": 1}},
    "finetune": {"steps": 2, "eval_every": 0},
    "bilevel": {"steps": 3, "k": 1, "eval_every": 0},  # 3: the sweep's K = 2 cycle must fit (config check)
    "unlearn": {"esd": {"steps": 2}},
}


def run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def benchmark_rows(work: Path) -> list[dict]:
    """(job, its resources group, seconds, peak RSS MB) of every job Snakemake recorded."""
    rows = []
    for path in sorted((work / "benchmarks" / SCALE).rglob("*.tsv")):
        job = path.relative_to(work / "benchmarks" / SCALE).with_suffix("").as_posix()
        with path.open() as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        rows.append({"job": job, "group": GROUPS.get(job.split("/")[0]), "seconds": float(record["s"]),
                     "max_rss_mb": float(record["max_rss"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pruneforget-fullwidth"))
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    work = args.work
    if not (work / "Snakefile").exists():
        work.mkdir(parents=True, exist_ok=True)
        copy_repo(work)
    if not (work / "data" / "standins" / "standins.json").exists():
        run([sys.executable, "-m", "pruneforget", "make-standins", "--full-width"], work)
    (work / "fullwidth.yaml").write_text(yaml.safe_dump(OVERLAY))
    targets = [f"results/{SCALE}/{out}" for out in TARGETS.values()]
    run(["snakemake", "--cores", str(args.cores), "--configfile", "config/sd21_smoke.yaml", "fullwidth.yaml",
         "--", *targets], work)
    paper = yaml.safe_load((ROOT / "config" / "sd21.yaml").read_text())["resources"]
    params = json.loads((work / "data" / "standins" / "standins.json").read_text())
    print(f"\nfull-width stand-ins: {params}; 2 steps per job at 64 px, one process")
    print("| job | seconds | peak RSS (GB) | sd21.yaml mem_mb (GB) per job |")
    print("|---|---|---|---|")
    for row in benchmark_rows(work):
        mem = paper[row["group"]]["mem_mb"] / 1000 if row["group"] in paper else float("nan")
        print(f"| {row['job']} | {row['seconds']:.0f} | {row['max_rss_mb'] / 1000:.1f} | {mem:.0f} |")


if __name__ == "__main__":
    main()
