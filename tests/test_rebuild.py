"""Two builds of the micro `paper_figures` from nothing, in two fresh copies, are identical file by
file, timings excepted (their list: workflow/scripts/compare_builds.py). Every stage is seeded, and
nothing in a saved model is initialised at random.

Two 7-minute builds do not fit CI's budget beside the rest, so this test is opt-in:
`python -m pytest -m rebuild` (14 minutes on 2 cores). CI covers the same property on the
teacher chain (rebuilt by `dvc repro`) and on every kind of re-saved model
(tests/test_workflow_micro.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from repo_copy import ROOT, copy_repo, run
from test_workflow_micro import write_micro_config


@pytest.mark.rebuild
def test_two_builds_of_the_micro_paper_figures_are_identical(tmp_path):
    builds: list[Path] = []
    for name in ("first", "second"):
        repo = tmp_path / name
        repo.mkdir()
        copy_repo(repo)
        assert run(["git", "init", "-q"], repo).returncode == 0
        write_micro_config(repo)
        result = run(["snakemake", "--cores", "2", "all", "paper_figures"], repo, timeout=2400)
        assert result.returncode == 0, result.stderr[-6000:]
        builds.append(repo)
    sys.path.insert(0, str(ROOT / "workflow/scripts"))
    from compare_builds import compare, digests

    for tree in ("results", "figures"):
        assert digests(builds[0] / tree), tree
        assert compare(builds[0] / tree, builds[1] / tree) == [], tree
