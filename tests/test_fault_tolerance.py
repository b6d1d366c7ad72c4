"""Failures of a real 2-worker job: a killed worker ends the job quickly, naming the rank;
NaN keeps the last good checkpoint. (A SIGKILL of the whole job mid-epoch, then --resume, is
test_preemption.py's, beside the uninterrupted job it compares with.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from run_horovod import wait_for

from lars_hvd import horovodrun

pytestmark = [pytest.mark.core, pytest.mark.multiprocess, pytest.mark.fashion_mnist]

TRAIN = [sys.executable, "-m", "lars_hvd.train"]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(horovodrun.command(2, "gloo", [*TRAIN, *args]),
                            env=horovodrun.env(2), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"did not finish in {timeout} s:\n{out[-4000:]}") from None
    return out


def rank_pids(marker: str, rank: int) -> list[int]:
    """PIDs of processes whose command line holds ``marker`` (this test's run directory) and
    whose environment says HOROVOD_RANK=rank (horovodrun starts ranks in their own sessions)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmdline and b"lars_hvd.train" in cmdline and \
                f"HOROVOD_RANK={rank}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_ends_the_job_within_60_s_naming_the_rank(tmp_path):
    proc = start(["--train-examples", "60000", "--global-batch-size", "256", "--epochs", "20",
                  "--run-dir", str(tmp_path / "run")])
    wait_for(tmp_path / "run" / "plan.json", proc)
    time.sleep(3)  # into training
    pids = rank_pids(str(tmp_path / "run"), 1)
    assert pids, "rank 1's process was not found"
    killed_at = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    out = finish(proc, timeout=90)
    elapsed = time.monotonic() - killed_at
    assert proc.returncode != 0
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end"
    assert "Process 1 exit with status code" in out or "rank 1" in out.lower(), out[-3000:]


def test_nan_keeps_the_last_good_checkpoint(tmp_path):
    import bad_inputs

    outcome = bad_inputs.nan_loss(tmp_path)
    assert outcome.code == 2
    assert (tmp_path / "run" / "checkpoints" / "epoch-1.index").exists()
    assert not (tmp_path / "run" / "checkpoints" / "epoch-2.index").exists()
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "epoch-1"))
    for key in reader.get_variable_to_shape_map():
        value = reader.get_tensor(key)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), key
