"""Atomic artifact writing: a failed job must leave nothing Snakemake or DVC could take for finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `out`; rename it to `out` only if the block succeeds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)


@contextlib.contextmanager
def atomic_file(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `out`; rename it to `out` only if the block succeeds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent, suffix=out.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON atomically (stable bytes for DVC)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def resumable_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Like `atomic_dir`, but the work directory has a stable name and survives a failure.

    Long jobs (training, sampling thousands of prompts) keep checkpoints or finished items in
    `.<name>.work` beside `out`; a rerun after a crash finds them there and continues. The name
    never matches `out`, so Snakemake and DVC never take it for the finished artifact.
    """
    out = Path(out)
    work = resumable_work_path(out)
    work.mkdir(parents=True, exist_ok=True)
    yield work
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(work, out)


def resumable_work_path(out: str | os.PathLike) -> Path:
    """The work directory `resumable_dir(out)` uses (for processes that share it without renaming)."""
    out = Path(out)
    return out.parent / f".{out.name}.work"
