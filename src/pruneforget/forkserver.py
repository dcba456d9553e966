"""A warm interpreter for many short jobs: import torch, diffusers and every command once, then fork
one child per `python -m pruneforget <command>`.

A workflow job spends about 8 s of one core importing torch, diffusers and transformers before it
computes anything; the micro build runs 139 jobs and the sd21 smoke 218, so imports were most of
their time. `python -m pruneforget warm -- snakemake ...` (or `-- dvc repro`) starts this server
on a Unix socket, runs the given command with PRUNEFORGET_FORKSERVER naming the socket, and stops
the server when the command ends. Each `python -m pruneforget ...` the workflow starts then sends
its argv, working directory, environment and standard streams (as file descriptors) to the server,
which forks a child that runs the command exactly as the job would have, in the job's directory,
environment and streams; the job waits for the child's exit code and passes signals on to it.

Only local runs use it: a job whose interpreter, import path or import-time environment differs
from the server's (an accelerate-launched rank, a SLURM job on another node, another venv) is
refused and runs on its own, so the warm path never changes what a job computes. The standard
library's multiprocessing forkserver runs Python functions, not command lines with a caller's
streams and exit code, so this small protocol is written here.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Callable

ENV_VAR = "PRUNEFORGET_FORKSERVER"
# Variables that may differ between the server and a job: none is read when a module is imported.
# Snakemake and DVC set their own per job (and DVC unsets pyenv's, which pyenv's shims set for the
# interpreters they start); accelerate's launcher (torchrun) sets a rank's, read when the job sets
# up its process group; the thread counts are applied to torch in the child; PYTHONPATH's effect,
# sys.path, is compared itself (job_identity).
JOB_VARIABLES = ("PWD", "OLDPWD", "SHLVL", "_", "TMPDIR", "TMP", "TEMP", "TEMPDIR", "PYTHONPATH", ENV_VAR,
                 "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_NAME", "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCH_NCCL_ASYNC_ERROR_HANDLING")
JOB_PREFIXES = ("SNAKEMAKE", "DVC_", "PYENV", "ACCELERATE_", "TORCHELASTIC_")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
STREAMS = (0, 1, 2)
POLL_S = 0.05  # how often the server looks for ended jobs (a job takes seconds)


class Unavailable(Exception):
    """No server, or the server refused this job: the caller runs the command itself."""


# ---- the wire: 4-byte length, then JSON -------------------------------------------------------

def _send(conn: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(conn, [payload], list(fds))
    else:
        conn.sendall(payload)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunk = conn.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks += chunk
    return chunks


def _recv(conn: socket.socket, with_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(conn, 4, with_fds)
        head += _recv_exact(conn, 4 - len(head)) if len(head) < 4 else b""
    else:
        head = _recv_exact(conn, 4)
    (length,) = struct.unpack("!I", head)
    return json.loads(_recv_exact(conn, length)), fds


# ---- what a job must share with the server ----------------------------------------------------

def job_identity() -> dict:
    """What this interpreter is: a job runs warm only in an interpreter like the server's, which
    would import the same files (site makes sys.path absolute and without duplicates)."""
    return {"executable": os.path.realpath(sys.executable), "prefix": sys.prefix, "path": sys.path[1:],
            "version": sys.version}


def env_mismatch(server_env: dict[str, str], job_env: dict[str, str]) -> list[str]:
    """Variables whose difference could change what an import did (sorted); empty if none."""
    def fixed(name: str) -> bool:
        return not (name in JOB_VARIABLES or name.startswith(JOB_PREFIXES)
                    or (name in THREAD_VARIABLES and "OMP_NUM_THREADS" in job_env))
    names = {n for n in (*server_env, *job_env) if fixed(n)}
    return sorted(n for n in names if server_env.get(n) != job_env.get(n))


# ---- the job's side ---------------------------------------------------------------------------

def run_remote(address: str, argv: list[str]) -> int:
    """Run `python -m pruneforget *argv` in a child of the server at `address`, with this
    process's directory, environment and standard streams; return its exit code. Raises
    Unavailable when there is no server or it refuses the job (before anything ran)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
    except OSError as exc:
        conn.close()
        raise Unavailable(f"no server at {address}: {exc}") from exc
    with conn:
        _send(conn, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), **job_identity()}, STREAMS)
        reply, _ = _recv(conn)
        if "refused" in reply:
            raise Unavailable(reply["refused"])
        child = reply["pid"]

        def forward(signum, _frame):  # Snakemake and SLURM stop a job by signalling it
            os.kill(child, signum)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        try:
            reply, _ = _recv(conn)
        except ConnectionError:
            return 1  # the server died with the child
        code = reply["exit"]
        return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


# ---- the server's side ------------------------------------------------------------------------

def preload(modules: list[str]) -> None:
    """Import `modules` (every command, and with them torch, diffusers, transformers, ...).
    Nothing runs a tensor operation: OpenMP's thread pool must not exist before a fork."""
    for module in modules:
        importlib.import_module(module)


def _child(conn: socket.socket, request: dict, fds: list[int], run: Callable[[list[str]], None]) -> None:
    """In the forked child: become the job, run its command, exit with its code."""
    code = 1
    try:
        for fd, target in zip(fds, STREAMS):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["argv"]]
        sys.path[0] = request["cwd"]  # what `python -m` puts first
        tempfile.tempdir = None  # re-read TMPDIR
        if "OMP_NUM_THREADS" in request["env"]:
            import torch

            torch.set_num_threads(int(request["env"]["OMP_NUM_THREADS"]))
        # The job was killed (its connection closed): stop too, as the job's own process would.
        threading.Thread(target=_exit_when_closed, args=(conn,), daemon=True).start()
        run(request["argv"])
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001  (what the interpreter would print, then exit 1)
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()  # os._exit skips them; a fresh interpreter would run them
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _exit_when_closed(conn: socket.socket) -> None:
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os._exit(143)


def bind(address: str) -> socket.socket:
    """The server's listening socket at `address` (a path)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    return listener


def serve(listener: socket.socket, until: subprocess.Popen, run: Callable[[list[str]], None]) -> None:
    """Accept jobs until `until` has exited and every job it started has ended; one forked child
    per job, which calls `run(argv)`. Single-threaded, so that no lock is held by another thread
    when it forks."""
    identity, server_env = job_identity(), dict(os.environ)
    listener.setblocking(False)
    children: dict[int, socket.socket] = {}
    try:
        while until.poll() is None or children:
            readable, _, _ = select.select([listener], [], [], POLL_S)
            if readable:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                _admit(conn, identity, server_env, children, listener, run)
            _reap(children)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        listener.close()


def _admit(conn: socket.socket, identity: dict, server_env: dict, children: dict, listener, run) -> None:
    try:
        request, fds = _recv(conn, with_fds=len(STREAMS))
    except (ConnectionError, ValueError, OSError):
        conn.close()
        return
    reasons = [f"{k} differs" for k in identity if request.get(k) != identity[k]]
    mismatch = env_mismatch(server_env, request.get("env", {}))
    if mismatch:
        reasons.append("environment differs in " + ", ".join(mismatch[:5]))
    if reasons or len(fds) != len(STREAMS):
        for fd in fds:
            os.close(fd)
        _send(conn, {"refused": "; ".join(reasons) or "standard streams missing"})
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        listener.close()
        for other in children.values():
            other.close()
        _child(conn, request, fds, run)
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    _send(conn, {"pid": pid})


def _reap(children: dict[int, socket.socket]) -> None:
    for pid in list(children):  # only our jobs: the command itself is reaped by Popen
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            conn = children.pop(pid)
            try:
                _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            except OSError:
                pass  # the job was killed; nobody is waiting
            conn.close()


def warm(command: list[str], modules: list[str], run: Callable[[list[str]], None]) -> int:
    """Run `command` (e.g. `snakemake --cores 2`) with a warm server for the pruneforget jobs it
    starts, having imported `modules`; each job's child calls `run(argv)`. Returns the command's
    exit code. The server lives in this process and ends with the command."""
    preload(modules)
    # Not TemporaryDirectory: its finalizer is an atexit hook, which every child runs on exit.
    tmp = Path(tempfile.mkdtemp(prefix="pruneforget-warm-"))
    address = str(tmp / "socket")
    os.environ[ENV_VAR] = address  # jobs inherit it; the server compares environments with its own
    listener = bind(address)  # before the command starts, so its first job finds the server
    try:
        try:
            process = subprocess.Popen(command)
        except OSError as exc:
            listener.close()
            raise SystemExit(f"warm: cannot start {command[0]!r}: {exc}") from exc
        try:
            serve(listener, until=process, run=run)
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
        return process.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
