"""End-to-end builds that run in the background, beside the rest of the suite, once per session.

A build lives in a directory of its own (`directory`). Whoever asks first starts it (`claim`:
an exclusive marker file, so that under pytest-xdist the controller and both workers can all
ask, and one build runs). When its process ends, its exit status goes to `<name>.rc`, which any
process of the session can wait for (`wait`): a test module's fixture waits in whichever worker
runs it."""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
import time
from pathlib import Path


def directory(config, name: str) -> Path:
    """The session's directory for build `name`, the same in the xdist controller and workers
    (each worker's basetemp is a child of the controller's)."""
    if hasattr(config, "workerinput"):
        root = Path(config._tmp_path_factory.getbasetemp()).parent
    else:
        root = Path(config._tmp_path_factory.getbasetemp())
    return root / "background" / name


def claim(base: Path) -> bool:
    """True for the first caller of the session for `base` (who then starts its builds)."""
    base.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(base / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def start(cmd: list[str], cwd: Path, base: Path, name: str, env: dict | None = None) -> subprocess.Popen:
    """Run `cmd` in `cwd`, its output in `<base>/<name>.log`, its exit status written to
    `<base>/<name>.rc` when it ends; killed if this process exits first."""
    with open(base / f"{name}.log", "w") as log:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

    def record() -> None:
        rc = process.wait()
        (base / f"{name}.rc.tmp").write_text(str(rc))
        os.replace(base / f"{name}.rc.tmp", base / f"{name}.rc")  # readers never see half a file

    threading.Thread(target=record, daemon=True).start()
    atexit.register(lambda: process.poll() is None and process.kill())
    return process


def wait(base: Path, names: tuple[str, ...], timeout: float) -> None:
    """Block until each named build of `base` has ended; fail with its log's tail unless it
    exited 0."""
    deadline = time.monotonic() + timeout
    for name in names:
        rc_file = base / f"{name}.rc"
        while not rc_file.exists():
            assert time.monotonic() < deadline, f"{name} build still running after {timeout:.0f} s"
            time.sleep(1)
        rc = int(rc_file.read_text())
        assert rc == 0, f"{name} build failed (exit {rc}):\n" + (base / f"{name}.log").read_text()[-8000:]
