"""`python -m pruneforget warm -- COMMAND`: jobs forked from one warm interpreter compute what they
compute on their own, with their own streams, directory, environment, exit code and signals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from pruneforget.forkserver import env_mismatch

PARAMS = json.dumps({"scheduler": "ddim", "steps": 2, "guidance": 3.0, "batch_size": 2})
# One warm run does all of it (the server's imports take ~15 s): each line records what it saw.
SCRIPT = """
set -u
job() { python -m pruneforget "$@"; }
cd "$WORK/jobdir"
OMP_NUM_THREADS=1 job sample --model ../model --prompts ../p.csv --params "$PARAMS" --seeds-per-prompt 2 --out warm > warm.out 2> warm.err
echo "sample $?" >> ../codes
job sample --model ../model --prompts ../p.csv --params "$PARAMS" --seeds-per-prompt 0 --out bad 2> bad.err
echo "bad $?" >> ../codes
FOO_AT_IMPORT=1 OMP_NUM_THREADS=1 job sample --model ../model --prompts ../p.csv --params "$PARAMS" --seeds-per-prompt 2 --out refused 2> refused.err
echo "refused $?" >> ../codes
python -m pruneforget sample --model ../model --prompts ../p.csv --params "$PARAMS" --seeds-per-prompt 100000 --out long 2> long.err &
sleep 8; kill -TERM $!; wait $!
echo "killed $?" >> ../codes
"""


def test_warm_jobs_match_cold_jobs_and_pass_on_codes_streams_and_signals(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "model")
    (tmp_path / "p.csv").write_text("prompt\na red circle\na blue square\n")
    jobs = tmp_path / "jobdir"
    jobs.mkdir()
    env = {**os.environ, "WORK": str(tmp_path), "PARAMS": PARAMS, "OMP_NUM_THREADS": "1"}
    env.pop("PRUNEFORGET_FORKSERVER", None)
    cold = subprocess.run([sys.executable, "-m", "pruneforget", "sample", "--model", "../model", "--prompts", "../p.csv",
                           "--params", PARAMS, "--seeds-per-prompt", "2", "--out", "cold"],
                          cwd=tmp_path / "jobdir", env=env, capture_output=True, text=True)
    assert cold.returncode == 0, cold.stderr
    start = time.monotonic()
    warm = subprocess.run([sys.executable, "-m", "pruneforget", "warm", "--", "bash", "-c", SCRIPT],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    assert warm.returncode == 0, warm.stdout + warm.stderr
    codes = dict(line.split() for line in (tmp_path / "codes").read_text().splitlines())

    # Same bytes as the cold job, written relative to the job's own directory, stdout its own.
    assert codes["sample"] == "0", (jobs / "warm.err").read_text()
    pngs = sorted(p.name for p in (jobs / "cold").glob("*.png"))
    assert len(pngs) == 4 and sorted(p.name for p in (jobs / "warm").glob("*.png")) == pngs
    for name in [*pngs, "manifest.csv"]:
        assert (jobs / "warm" / name).read_bytes() == (jobs / "cold" / name).read_bytes(), name
    assert "warm" in (jobs / "warm.out").read_text()  # the command's "wrote ..." line, in the job's stdout
    assert "without the warm interpreter" not in (jobs / "warm.err").read_text()

    # A failing job: its message on its stderr, its exit code (sys.exit with a message: 1).
    assert codes["bad"] == "1" and "seeds per prompt must be an integer >= 1" in (jobs / "bad.err").read_text()

    # A job whose environment differs in a variable read at import runs on its own, same result.
    assert codes["refused"] == "0"
    assert "environment differs in FOO_AT_IMPORT" in (jobs / "refused.err").read_text()
    assert (jobs / "refused" / pngs[0]).read_bytes() == (jobs / "cold" / pngs[0]).read_bytes()

    # SIGTERM to the job reaches the child: it stops (143) and the server does not wait for
    # 200,000 images before `warm` returns.
    assert codes["killed"] == "143"
    assert elapsed < 300, elapsed


def test_only_job_variables_may_differ_from_the_server():
    server = {"PATH": "/bin", "HOME": "/root", "OMP_NUM_THREADS": "2"}
    assert env_mismatch(server, {**server, "PWD": "/x", "SNAKEMAKE_PROFILE": "p", "TMPDIR": "/t"}) == []
    assert env_mismatch({**server, "PYENV_HOOK_PATH": "/h"}, server) == []  # DVC's stage commands unset it
    assert env_mismatch(server, {**server, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) == []  # applied in the child
    assert env_mismatch(server, {k: v for k, v in server.items() if k != "OMP_NUM_THREADS"}) == ["OMP_NUM_THREADS"]
    assert env_mismatch(server, {**server, "HF_HUB_OFFLINE": "1"}) == ["HF_HUB_OFFLINE"]
    assert env_mismatch(server, {**server, "RANK": "1", "MASTER_PORT": "29500", "ACCELERATE_MIXED_PRECISION": "no"}) == []
    assert env_mismatch(server, {**server, "CUDA_VISIBLE_DEVICES": "1"}) == ["CUDA_VISIBLE_DEVICES"]
