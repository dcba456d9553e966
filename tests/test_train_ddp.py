"""DDP: two processes x 2 accumulation steps reach the weights of one process x 4 (same samples,
same effective batch), with evaluation and checkpoints on the way (no barrier mismatch)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_toy_run.py")


def run(cmd, tmp_path):
    # No ACCELERATE_USE_CPU: make_accelerator must itself form a gloo group on a machine without
    # CUDA, or the two processes would each train alone (and the weights below would differ).
    env = {**{k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_processes_match_one_process_with_more_accumulation(tmp_path):
    run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "2", "4"], tmp_path)
    run(["torchrun", "--standalone", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / "two"), "2", "2"], tmp_path)
    one, two = (torch.load(tmp_path / d / "weights.pt") for d in ("one", "two"))
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6)
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    pd.testing.assert_series_equal(a["mse"], b["mse"], rtol=1e-5)  # the logged loss is the mean over processes
    assert pd.read_csv(tmp_path / "two" / "eval.csv")["step"].tolist() == [0, 2, 3]
    assert "num_processes\": 2" in (tmp_path / "two" / "cost.json").read_text()
