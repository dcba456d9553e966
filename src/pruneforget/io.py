"""Atomic artifact writing: a failed job must leave nothing Snakemake or DVC could take for finished."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

# The fingerprint a resumable job keeps in its work directory (dropped from the finished artifact).
FINGERPRINT = ".fingerprint.json"


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
def resumable_dir(out: str | os.PathLike, fingerprint: dict, drop: tuple[str, ...] = ()) -> Iterator[Path]:
    """Like `atomic_dir`, but the work directory has a stable name and survives a failure.

    Long jobs (training, sampling thousands of prompts) keep checkpoints or finished items in
    `.<name>.work` beside `out`; a rerun after a crash finds them there and continues. The name
    never matches `out`, so Snakemake and DVC never take it for the finished artifact.

    Resumed work never mixes settings: `fingerprint` is everything that determines the result
    (`command_fingerprint`: the command's arguments and its inputs' identities). The work
    directory keeps it; a rerun whose fingerprint differs, or finds none, starts over with a
    one-line notice. `drop` names work files (checkpoints) left out of the artifact: they are
    removed after the final rename, so a failed rename leaves them for the rerun to continue from.
    """
    out = Path(out)
    work = resumable_work_path(out)
    stamp = work / FINGERPRINT
    text = json.dumps(fingerprint, indent=1, sort_keys=True, default=str)
    if work.exists():
        old = stamp.read_text() if stamp.exists() else None
        if old != text:
            print(f"{work}: left by a run with other {_what_differs(old, text)}; starting over", file=sys.stderr)
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        with atomic_file(stamp) as tmp:
            tmp.write_text(text)
    yield work
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(work, out)
    for name in (FINGERPRINT, *drop):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _what_differs(old: str | None, new: str) -> str:
    """`settings or inputs (params, seed)`: the arguments whose values differ between two fingerprints."""
    if old is None:
        return "settings (no fingerprint: an older version of the code)"
    try:
        a, b = json.loads(old), json.loads(new)
    except json.JSONDecodeError:
        return "settings (unreadable fingerprint)"
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return f"settings or inputs ({', '.join(keys)})"


def command_fingerprint(args: argparse.Namespace) -> dict:
    """Everything that determines a command's result: its arguments (the config section passed as
    --params among them) with each existing input path replaced by its identity; `out` excluded."""
    def value(v: Any) -> Any:
        if isinstance(v, Path) and v.exists():
            return {"path": str(v), "identity": path_identity(v)}
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        return v

    return {k: value(v) for k, v in sorted(vars(args).items()) if k != "out"}


def path_identity(path: str | os.PathLike) -> str:
    """A digest of every file under `path` (relative name, size, modification time): it changes
    whenever an input is rebuilt, without reading the bytes of multi-GB models."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be read; the message names the work directory to delete."""

    def __init__(self, checkpoint: Path, work_dir: Path, cause: Exception):
        super().__init__(f"cannot resume from {checkpoint} ({type(cause).__name__}: {cause}); the checkpoint is "
                         f"corrupted: delete the work directory {work_dir} and rerun to restart the job from step 0")


def resumable_work_path(out: str | os.PathLike) -> Path:
    """The work directory `resumable_dir(out)` uses (for processes that share it without renaming)."""
    out = Path(out)
    return out.parent / f".{out.name}.work"


def is_local_path(value: str) -> bool:
    """Whether `base.pretrained` names a local directory rather than a hub id.

    Local: starts with `/`, `./`, `../` or `~`, or has more than one `/` (`data/models/sd21`).
    Everything else (`org/name`, `name`) is a hub id, so a local copy one level below the
    repository root is written `./sd21`, not `sd21`.
    """
    return value.startswith(("/", "./", "../", "~")) or value.count("/") > 1
