"""Runs a command under ``horovodrun -np N`` from a test, bounded in time.

A thin layer over ``lars_hvd.horovodrun``: the tests' own modules on PYTHONPATH, and a
timeout that fails the test instead of stalling CI.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lars_hvd import horovodrun

REPO = Path(__file__).resolve().parent.parent


def run(command: list[str], *, np_: int = 2, controller: str = "gloo", timeout: float = 300,
        cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs ``command`` on ``np_`` ranks; returns the finished process (stdout+stderr merged)."""
    extra = {"PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH",
                                                                                 "")])}
    try:
        return horovodrun.run(command, np_=np_, controller=controller, timeout=timeout,
                              cwd=cwd, extra_env={**extra, **(env or {})})
    except TimeoutError as err:
        raise AssertionError(str(err)) from None


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240,
             poll: float = 0.1) -> None:
    """Waits until ``path`` exists while ``proc`` (a running job) is alive, looking every
    ``poll`` seconds; fails otherwise."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the job ended before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path.name} did not appear in {timeout} s"
        time.sleep(poll)
