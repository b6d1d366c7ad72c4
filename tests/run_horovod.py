"""Runs a command under ``horovodrun -np N`` from a test, bounded in time.

A hang fails the test instead of stalling CI: Horovod's stall inspector shuts a stalled job
down, and a hard timeout kills the whole process group as a last resort.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def horovodrun_env(np_: int) -> dict:
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // np_))
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": threads,  # cores / local size
            "HOROVOD_STALL_CHECK_TIME_SECONDS": "20",
            "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "60",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def horovodrun_command(np_: int, controller: str, command: list[str]) -> list[str]:
    if controller not in ("gloo", "mpi"):
        raise ValueError(f"controller must be 'gloo' or 'mpi'. Received: {controller!r}.")
    cmd = [str(BIN / "horovodrun"), "-np", str(np_), "-H", f"localhost:{np_}", f"--{controller}",
           "--start-timeout", "60"]
    if controller == "mpi":
        mpi_args = "--oversubscribe --bind-to none"
        if os.geteuid() == 0:
            mpi_args += " --allow-run-as-root"
        cmd.append(f"--mpi-args={mpi_args}")
    return cmd + command


def run(command: list[str], *, np_: int = 2, controller: str = "gloo", timeout: float = 300,
        cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``command`` on ``np_`` ranks; returns the finished process (stdout+stderr merged)."""
    proc = subprocess.Popen(
        horovodrun_command(np_, controller, command), cwd=cwd,
        env={**horovodrun_env(np_), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(
            f"horovodrun ({controller}) did not finish in {timeout} s; output:\n{out[-5000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)
