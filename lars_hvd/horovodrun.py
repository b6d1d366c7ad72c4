"""Runs a command under ``horovodrun -np N`` on this machine, bounded in time.

Used by the benchmarks (which launch their own multi-process measurements) and the tests.
A hang cannot stall the caller: Horovod's stall inspector shuts a stalled job down, and a
hard timeout kills the whole process group as a last resort.

``python -m lars_hvd.horovodrun ARGS`` is Horovod's ``horovodrun ARGS`` with a cheaper
build check. At every launch, horovodrun asks whether Horovod was built with Gloo (or MPI)
by importing ``horovod.tensorflow`` in a child process: all of TensorFlow. This asks the
same C function of the same extension (``horovod_gloo_built``, what ``hvd.gloo_built()``
calls) with only the shared libraries loaded, a tenth of the cost. Where that cannot be
done, horovodrun's own check runs. The launch scripts (``launch/``) call
horovodrun itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
# Prints horovod_gloo_built() and horovod_mpi_built() of Horovod's TensorFlow extension: the
# TensorFlow libraries it links, then the extension, loaded as horovod.common.basics does.
_BUILT = """
import ctypes, importlib.util, pathlib
def folder(name): return pathlib.Path(importlib.util.find_spec(name).origin).parent
for lib in ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2"):
    ctypes.CDLL(str(folder("tensorflow") / lib), mode=ctypes.RTLD_GLOBAL)
(ext,) = (folder("horovod") / "tensorflow").glob("mpi_lib*.so")
lib = ctypes.CDLL(str(ext), mode=ctypes.RTLD_GLOBAL)
print(int(lib.horovod_gloo_built()), int(lib.horovod_mpi_built()))
"""


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


LAUNCHER = [sys.executable, "-m", "lars_hvd.horovodrun"]  # horovodrun, as main() runs it


def command(np_: int, controller: str, cmd: list[str]) -> list[str]:
    """``horovodrun -np N -H localhost:N --gloo|--mpi <cmd>`` (through ``main``)."""
    if controller not in ("gloo", "mpi"):
        raise ValueError(f"controller must be 'gloo' or 'mpi', got {controller!r}")
    result = [*LAUNCHER, "-np", str(np_), "-H", f"localhost:{np_}", f"--{controller}",
              "--start-timeout", "60"]
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


def extension_built() -> dict[str, bool] | None:
    """{"gloo": ..., "mpi": ...}: whether Horovod's TensorFlow extension was built with
    each, as it answers itself; None where its libraries cannot be loaded so."""
    found = subprocess.run([sys.executable, "-c", _BUILT], capture_output=True, text=True,
                           check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    answer = found.stdout.split()
    if found.returncode != 0 or len(answer) != 2 or not set(answer) <= {"0", "1"}:
        return None
    return {"gloo": answer[0] == "1", "mpi": answer[1] == "1"}


def main(argv: list[str] | None = None) -> int | None:
    """horovodrun ARGV, its build check answered by ``extension_built``."""
    from horovod.runner import launch

    built = extension_built()
    if built is not None:
        # Horovod: run_controller reads these two names of horovodrun's module.
        launch.gloo_built = lambda verbose=False: built["gloo"]
        launch.mpi_built = lambda verbose=False: built["mpi"]
    sys.argv = ["horovodrun", *(sys.argv[1:] if argv is None else argv)]
    return launch.run_commandline()


if __name__ == "__main__":
    sys.exit(main())
