"""Elastic training on one machine: a host-discovery script whose answer the test changes,
so that a worker leaves (2 slots -> 1) and comes back (1 -> 2) during the run, across a
batch schedule's phase change. Each phase's global batch must be held throughout: with the
per-worker batch capped at 128, the lone worker accumulates two micro-batches per step where
two workers take one each (four and two in the second phase)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys

import pytest
import tensorflow as tf
from run_horovod import wait_for

from lars_hvd import horovodrun

pytestmark = [pytest.mark.core, pytest.mark.multiprocess, pytest.mark.fashion_mnist]


# 16 optimizer steps an epoch at 256, then 8 at 512 from epoch CHANGE (--batch-schedule).
# The worker leaves after epoch 2's checkpoint and returns once epoch CHANGE has begun on the
# lone worker: 10 epochs (about 4 s or more) for each change to be seen; in a run here the
# leave took effect 4 epochs after it, the return 1.
EPOCHS, CHANGE = 24, 13


def wait_for_text(path, text: str, proc, timeout: float = 240) -> None:
    """Waits until the job's log holds ``text`` while the job runs; fails otherwise."""
    import time

    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert proc.poll() is None, f"the job ended before {text!r} appeared"
        assert time.monotonic() < deadline, f"{text!r} did not appear in {timeout} s"
        time.sleep(0.1)


def start_elastic(tmp_path, train_args: list[str]):
    """``horovodrun`` elastic on 1-2 local slots, its host-discovery script reading the file
    ``slots`` (the test writes it to make a worker leave or join). Returns (job, slots file,
    log, run directory)."""
    slots = tmp_path / "slots"
    slots.write_text("localhost:2\n")
    discover = tmp_path / "discover.sh"
    discover.write_text(f"#!/bin/sh\ncat '{slots}'\n")
    discover.chmod(0o755)
    run_dir = tmp_path / "run"
    log = tmp_path / "job.log"
    cmd = [*horovodrun.LAUNCHER, "-np", "2", "--min-np", "1", "--max-np", "2",
           "--host-discovery-script", str(discover), "--start-timeout", "60",
           # one host: elastic horovodrun cannot probe interfaces host to host, so name one
           "--network-interface", "lo",
           sys.executable, "-m", "lars_hvd.train", "--elastic", *train_args,
           "--run-dir", str(run_dir)]
    with open(log, "w") as output:
        proc = subprocess.Popen(cmd, env=horovodrun.env(2), stdout=output,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                stdin=subprocess.DEVNULL)
    return proc, slots, log, run_dir


@contextlib.contextmanager
def ended(proc, log):
    """Runs the block that steers the job and waits for it; on any failure the job is
    killed and the failure shows the log's end. The caller reads the log afterwards."""
    try:
        yield
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(log.read_text()[-6000:]) from None
    assert proc.returncode == 0, log.read_text()[-6000:]


def test_a_worker_leaves_and_returns_with_each_global_batch_held(tmp_path):
    """A worker leaves at epoch 2, the batch schedule's second phase starts on the lone
    worker, and the worker comes back for the rest of the run."""
    # Long enough (about 0.5 s an epoch here) for Horovod's host discovery, which polls the
    # script every second or so, to see the return before the run ends.
    proc, slots, log, run_dir = start_elastic(tmp_path, [
        "--train-examples", "4096", "--global-batch-size", "256", "--batch-schedule",
        f"{CHANGE}:512", "--max-per-worker-batch", "128", "--epochs", str(EPOCHS),
        "--warmup-epochs", "1"])
    phase_2_alone = (f"epoch {CHANGE}: 512 examples per optimizer step = 1 workers x 4 "
                     f"accumulation step(s) x 128")
    with ended(proc, log):
        wait_for(run_dir / "checkpoints" / "epoch-2.index", proc)
        slots.write_text("localhost:1\n")  # a worker leaves, before the phase change
        wait_for_text(log, phase_2_alone, proc)
        slots.write_text("localhost:2\n")  # and comes back
        proc.wait(timeout=300)
    out = log.read_text()
    counts = [int(n) for n in re.findall(r"elastic: (\d) worker\(s\) from epoch", out)]
    assert counts[0] == 2 and 1 in counts and counts[-1] == 2, (counts, out[-4000:])
    assert counts.index(1) < len(counts) - 1
    # Each phase's global batch held at every worker count: 2 x 128, then 1 x 2 x 128; at
    # the phase change 1 x 4 x 128, and after the return 2 x 2 x 128.
    assert "256 examples per optimizer step = 1 workers x 2 accumulation step(s) x 128" in out
    assert "256 examples per optimizer step = 2 workers x 1 accumulation step(s) x 128" in out
    assert "512 examples per optimizer step = 2 workers x 2 accumulation step(s) x 128" in out
    assert not re.search(r"\d+ examples per optimizer step",
                         out.replace("256 examples", "").replace("512 examples", ""))
    assert "test accuracy" in out
    # Each phase's optimizer steps whatever the worker count, and Keras's micro-batch counter
    # re-derived at every change: it counts micro-batches, 2 a step at the end (2 x 2 x 128).
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"epoch-{EPOCHS}"))
    steps = (CHANGE - 1) * 16 + (EPOCHS - CHANGE + 1) * 8
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == steps
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == steps * 2
