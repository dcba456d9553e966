#!/usr/bin/env python
"""What DVC costs on top of Snakemake: `dvc status` on this checkout's DAG, and the same build by
`snakemake` and by `dvc repro` from the same state (nothing), in two fresh clones.

    python workflow/scripts/bench_dvc.py status                 # here: dvc status, cold and warm
    python workflow/scripts/bench_dvc.py rebuild --remove results/tiny/scores figures
    python workflow/scripts/bench_dvc.py build --config config/micro.yaml --workdir /tmp/bench

`rebuild` works on this checkout, which must be fully built and recorded (`snakemake -n` and
`dvc status` with nothing to do): it deletes the --remove paths, times `snakemake --cores N`
rebuilding them, deletes them again and times `dvc repro` (the same jobs, from the same state).

`build` clones the committed repository twice into --workdir, makes --config the clones' default
config (dvc.yaml generated for it), and builds the default target (every table and figure) in
one clone with `snakemake --cores N` for each N of --cores, and in the other with `dvc repro`
(one stage at a time). It prints the wall times, their ratio, and the Snakemake start-up a DVC
stage pays (a dry run of one stage's own command). The two builds run one after the other, so
each has the machine to itself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return time.perf_counter() - start


def clone(dest: Path, config: str) -> Path:
    """A fresh clone of the committed repository whose default config is `config`."""
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    shutil.copy(ROOT / config, dest / "config/config.yaml")
    subprocess.run([sys.executable, "workflow/scripts/dvc_sync.py", "generate"], cwd=dest, check=True, capture_output=True)
    return dest


def stage_count(repo: Path) -> int:
    from dvc.repo import Repo

    return len(Repo(str(repo)).index.stages)


def bench_status() -> None:
    n = stage_count(ROOT)
    for label in ("first", "second"):
        print(f"dvc status, {n} stages, {label} call: {timed([sys.executable, '-m', 'dvc', 'status'], ROOT):.1f} s")


def bench_rebuild(remove: list[str], cores: int) -> None:
    dry = subprocess.run(["snakemake", "-n", "--cores", "1"], cwd=ROOT, capture_output=True, text=True)
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=ROOT, capture_output=True, text=True)
    if "Nothing to be done" not in dry.stdout + dry.stderr or "up to date" not in status.stdout:
        sys.exit("rebuild needs a complete, recorded build here: run `snakemake --cores 2` first")
    walls = {}
    for label, cmd in ((f"snakemake --cores {cores}", ["snakemake", "--cores", str(cores)]),
                       ("dvc repro", [sys.executable, "-m", "dvc", "repro"])):
        for path in remove:
            shutil.rmtree(ROOT / path) if (ROOT / path).is_dir() else (ROOT / path).unlink(missing_ok=True)
        walls[label] = timed(cmd, ROOT)
        print(f"{label}: {walls[label]:.0f} s", flush=True)
    print(f"rebuilding {' '.join(remove)}: dvc repro / snakemake --cores {cores} = "
          f"{walls['dvc repro'] / walls[f'snakemake --cores {cores}']:.2f}x")


def bench_build(config: str, workdir: Path, cores: list[int]) -> None:
    if workdir.exists():
        sys.exit(f"{workdir} exists: give an empty --workdir")
    workdir.mkdir(parents=True)
    walls = {}
    for n in cores:
        repo = clone(workdir / f"snakemake-{n}", config)
        walls[f"snakemake --cores {n}"] = timed(["snakemake", "--cores", str(n)], repo)
        print(f"snakemake --cores {n}: {walls[f'snakemake --cores {n}']:.0f} s", flush=True)
    repo = clone(workdir / "dvc", config)
    walls["dvc repro"] = timed([sys.executable, "-m", "dvc", "repro"], repo)
    stages = stage_count(repo)
    # What one stage's command costs before its job starts: Snakemake's start-up and DAG.
    startup = timed(["snakemake", "-n", "--cores", "all", "--allowed-rules", "report_table1", "--force", "--", "figures/table1.pdf"], repo)
    print(f"\n{config}, {stages} DVC stages, from nothing:")
    for label, wall in walls.items():
        print(f"  {label:<20} {wall:6.0f} s   {wall / walls['dvc repro']:.2f}x of dvc repro")
    for n in cores:
        print(f"  dvc repro / snakemake --cores {n}: {walls['dvc repro'] / walls[f'snakemake --cores {n}']:.2f}x")
    print(f"  Snakemake start-up per DVC stage: {startup:.1f} s ({startup * stages:.0f} s over {stages} stages)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["status", "rebuild", "build"])
    p.add_argument("--remove", nargs="+", default=["results/tiny/scores", "figures"], help="for rebuild: paths to delete and rebuild")
    p.add_argument("--config", default="config/micro.yaml", help="config the clones build (default: %(default)s)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/bench_dvc"))
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2], help="snakemake --cores to time (default: 1 2)")
    args = p.parse_args()
    if args.what == "status":
        bench_status()
    elif args.what == "rebuild":
        bench_rebuild(args.remove, args.cores[-1])
    else:
        yaml.safe_load((ROOT / args.config).read_text())  # a readable config before cloning anything
        bench_build(args.config, args.workdir, args.cores)


if __name__ == "__main__":
    main()
