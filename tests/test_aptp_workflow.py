"""The APTP rules: each budget (percent of MACs) has its own pruning run and expert, at both scales."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args: str) -> str:
    result = subprocess.run(["snakemake", "-n", "-p", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


def test_paper_scale_expert_80_prunes_on_a_gpu_with_the_paper_router():
    out = dry_run("--configfile", "config/sd21.yaml", "--", "results/sd21/expert-80")
    for rule in ["fetch_base", "prune_aptp", "extract_expert"]:
        assert re.search(rf"^{rule}\s+1$", out, re.M), out
    prune = out[out.index("rule prune_aptp:"):]
    assert "gpu=1" in re.search(r"resources: (.*)", prune).group(1)
    assert "--budget 0.8 " in prune and "results/sd21/aptp-80" in prune
    assert "all-mpnet-base-v2" in prune and '"experts": 8' in prune and '"steps": 5000' in prune
    extract = out[out.index("rule extract_expert:"):]
    assert "--target 0.8 --tolerance 0.03" in extract


def test_tiny_expert_55_comes_from_its_own_aptp_run():
    out = dry_run("--forceall", "--", "results/tiny/expert-55")
    assert "results/tiny/aptp-55" in out and "--budget 0.55 " in out and "aptp-80" not in out


def test_static_expert_names_are_not_taken_for_aptp_budgets():
    result = subprocess.run(["snakemake", "-n", "--", "results/tiny/expert-80-magnitude"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "rule extract_expert:" not in result.stdout + result.stderr
    assert "rule prune_aptp:" not in result.stdout + result.stderr
