"""Runs a command under ``horovodrun -np N`` on this machine, bounded in time.

Used by the benchmarks (which launch their own multi-process measurements) and the tests.
A hang cannot stall the caller: Horovod's stall inspector shuts a stalled job down, and a
hard timeout kills the whole process group as a last resort.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def env(np_: int, extra: dict | None = None) -> dict:
    """This environment, plus thread counts = cores / local size and a stall shutdown."""
    result = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // np_))
    result.update({
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": threads,  # Horovod: np_ ranks share this machine's cores
        "HOROVOD_STALL_CHECK_TIME_SECONDS": "20",
        "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "60",  # Horovod: a stalled job exits
        "PYTHONUNBUFFERED": "1",
    })
    result.update(extra or {})
    return result


def command(np_: int, controller: str, cmd: list[str]) -> list[str]:
    """``horovodrun -np N -H localhost:N --gloo|--mpi <cmd>``."""
    if controller not in ("gloo", "mpi"):
        raise ValueError(f"controller must be 'gloo' or 'mpi', got {controller!r}")
    horovodrun = BIN / "horovodrun"
    result = [str(horovodrun) if horovodrun.exists() else "horovodrun", "-np", str(np_), "-H",
              f"localhost:{np_}", f"--{controller}", "--start-timeout", "60"]
    if controller == "mpi":
        mpi_args = "--oversubscribe --bind-to none"
        if os.geteuid() == 0:
            mpi_args += " --allow-run-as-root"  # Open MPI refuses root without it
        result.append(f"--mpi-args={mpi_args}")
    return result + cmd


def run(cmd: list[str], *, np_: int = 2, controller: str = "gloo", timeout: float = 300,
        cwd: Path | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``cmd`` on ``np_`` ranks; returns the finished process (stdout+stderr merged).
    Raises TimeoutError, with the output so far, if it did not finish in ``timeout`` s."""
    proc = subprocess.Popen(
        command(np_, controller, cmd), cwd=cwd, env=env(np_, extra_env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise TimeoutError(f"horovodrun ({controller}) did not finish in {timeout} s; "
                           f"output:\n{out[-5000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)
