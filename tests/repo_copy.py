"""A copy of the repository as a fresh clone would hold it (plus uncommitted work), for tests that
run Snakemake or DVC without touching this checkout's results."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = ("results/", "logs/", "benchmarks/", ".snakemake/", "dvc.lock", "figures/")  # the copy builds its own


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def copy_repo(dest: Path) -> None:
    """Copy what a fresh clone would hold plus work not yet committed (git-tracked and untracked,
    not ignored files), without any results."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        src = ROOT / name
        if name.startswith(SKIP) or not (src.exists() or src.is_symlink()):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(src.readlink())
        else:
            shutil.copy2(src, target)
