"""Every ImageNet preset, end to end under ``horovodrun`` (AlexNet-BN's on 2 workers, the
ResNet-50 presets' on 1), as shipped.

Only what makes a run small is overridden (global batch, training and evaluation examples,
epochs and the warmup inside them); the model, precision, optimizer, schedule, evaluation
batch and frequency and the per-worker bound are the preset's. AlexNet-BN's run trains an
epoch (one optimizer step) and checkpoints it, is killed, resumes for one more epoch,
evaluates and checkpoints again, and writes its epoch's line to its log file as a batch job
would. The ResNet-50 presets train their one epoch on one worker and evaluate, without the
kill and resume (see RESUMED and WORKERS).
The peak resident memory of the largest worker is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lars_hvd import horovodrun

pytestmark = [pytest.mark.multiprocess, pytest.mark.fashion_mnist]

PRESETS = ["resnet50-imagenet-32k", "resnet50-imagenet-mlperf", "alexnet-bn-imagenet-8k"]
# Whether the test kills and resumes the preset's run, and on how many workers. The kill and
# resume take one code path whatever the model: AlexNet-BN's run checks it under horovodrun
# on two workers, test_train.py and test_preemption.py check exact resumes (ResNet-50's
# second launch would cost this test 25 CPU-s more). What a second worker adds (the
# broadcast, the allreduce, the per-worker split of the global batch) does not depend on the
# model either, and a second ResNet-50 worker costs 25-30 CPU-s of tracing: both ResNet-50
# presets run on one worker. mixed_float16 (the MLPerf preset's precision) has no fast
# kernels on a CPU: its first step of one example takes about 25 s here, after 30 s of
# tracing. mixed float16's own resume (the loss scale restored) is test_train.py's, its
# allreduce with loss scaling test_distributed.py's.
RESUMED = {"resnet50-imagenet-32k": False, "resnet50-imagenet-mlperf": False,
           "alexnet-bn-imagenet-8k": True}
WORKERS = {"resnet50-imagenet-32k": 1, "resnet50-imagenet-mlperf": 1,
           "alexnet-bn-imagenet-8k": 2}


def small(workers: int) -> list[str]:
    """One optimizer step an epoch, one example per worker, two evaluated per worker."""
    return ["--global-batch-size", str(workers), "--train-examples", str(workers),
            "--eval-examples", str(2 * workers), "--epochs", "2", "--warmup-epochs", "1"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Fashion-MNIST as ImageNet-layout TFRecords: 2 training and 2 validation shards."""
    from lars_hvd.data import make_tfrecords

    data = tmp_path_factory.mktemp("imagenet")
    for split, count in (("train", 16), ("validation", 16)):
        assert make_tfrecords.main(["default", str(data), "--source", "fashion-mnist",
                                    "--split", split, "--shards", "2", "--max-examples",
                                    str(count)]) == 0
    return data


def start(argv: list[str], log: Path, workers: int = 2) -> subprocess.Popen:
    """The training command under horovodrun -np ``workers``, its output (not a terminal) in
    ``log``."""
    cmd = [*horovodrun.LAUNCHER, "-np", str(workers), "-H",
           f"localhost:{workers}", "--gloo", sys.executable, "-m", "lars_hvd.train", *argv]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=horovodrun.env(workers), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                stdin=subprocess.DEVNULL)


def latest_checkpoint(run_dir: Path) -> str:
    index = run_dir / "checkpoints" / "checkpoint"
    found = re.search(r'^model_checkpoint_path: "([^"]+)"', index.read_text(), re.M) \
        if index.is_file() else None
    return found.group(1) if found else ""


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(log.read_text()[-5000:]) from None
    text = log.read_text()
    assert proc.returncode == 0, text[-5000:]
    return text


def check_last_epoch(text: str, epoch: int, workers: int = 2) -> None:
    """Epoch ``epoch`` (the last) trained and was evaluated (its line says so), and the
    summary counts the 2 examples a worker evaluated."""
    assert re.search(rf"epoch {epoch}/{epoch} \| loss \d.* \| val accuracy [\d.]+ \| .*"
                     r"images/s \| lr .* ETA run", text), text[-5000:]
    assert re.search(rf"test accuracy [\d.]+ \(a subset: {2 * workers} of 16 examples\) .* "
                     rf"world size {workers}", text), text[-5000:]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_checkpoints_resumes_and_evaluates(preset, shards, tmp_path):
    run_dir = tmp_path / "run"
    workers = WORKERS[preset]
    argv = ["--preset", preset, "--data-dir", str(shards), *small(workers), "--run-dir",
            str(run_dir)]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    if not RESUMED[preset]:  # one epoch, evaluated
        text = finish(start([*argv, "--epochs", "1", "--warmup-epochs", "0"], first_log,
                            workers), first_log)
        check_last_epoch(text, 1, workers)
        assert latest_checkpoint(run_dir) == "epoch-1"
        print_peak_memory(preset, text)
        return

    # Epoch 1, then the job is killed as soon as its checkpoint is the latest.
    proc = start(argv, first_log)
    deadline = time.monotonic() + 600
    try:
        while latest_checkpoint(run_dir) != "epoch-1":
            assert proc.poll() is None, first_log.read_text()[-5000:]
            assert time.monotonic() < deadline, first_log.read_text()[-5000:]
            time.sleep(0.05)
    finally:
        stop(proc)
    # (epoch 1's line comes after its checkpoint and evaluation: the kill may precede it)

    # Resumed: epoch 2, evaluation, checkpoint, summary.
    second = finish(start([*argv, "--resume"], second_log), second_log)
    assert re.search(r"resumed from \S+epoch-1: epoch 1, step 1", second), second[-5000:]
    check_last_epoch(second, 2)
    assert latest_checkpoint(run_dir) == "epoch-2"
    print_peak_memory(preset, second)


def print_peak_memory(preset: str, text: str) -> None:
    peak = re.search(r"peak resident memory\s+(\d+) MB on the largest worker", text)
    assert peak, text[-5000:]
    print(f"\n{preset}: peak resident memory {peak.group(1)} MB on the largest worker")
