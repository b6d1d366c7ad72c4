"""Stopping on a signal and resuming mid-epoch, exactly: in one process and under horovodrun.

The Slurm side (sbatch, requeue, time limits, a lost node) is in tests/test_slurm.py.
"""

from __future__ import annotations

import os
import re
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
from lars_hvd.signals import EXIT_RESUMABLE, Preempted
from lars_hvd.train import main

pytestmark = [pytest.mark.core, pytest.mark.fashion_mnist]

# A gate before ``import tensorflow`` (its docstring says how), on PYTHONPATH for one test.
HOLD_TENSORFLOW = Path(__file__).resolve().parent / "fixtures" / "hold_tensorflow"
# 8 optimizer steps an epoch, 3 epochs; deterministic ops, so reruns are bitwise equal.
FLAGS = ["--train-examples", "4096", "--global-batch-size", "512", "--epochs", "3",
         "--warmup-epochs", "1", "--deterministic"]


def final_tensors(run_dir: Path, epoch: int = 3) -> dict[str, np.ndarray]:
    """The training state in the checkpoint of ``epoch`` (FLAGS' last)."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"epoch-{epoch}"))
    # (save_counter counts one Checkpoint object's saves: bookkeeping, not training state)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if not key.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"))}


class SignalAtStep(tf.keras.callbacks.Callback):
    """Sends this process ``signum`` once, after optimizer step ``step``."""

    def __init__(self, step: int, signum: int):
        super().__init__()
        self.step, self.signum, self.sent = step, signum, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.sent and int(self.model.optimizer.iterations) == self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    main([*FLAGS, "--run-dir", str(run_dir)])
    # A run that ends normally gives the signals back.
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    return run_dir


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["USR1", "TERM"])
def test_a_signal_mid_epoch_checkpoints_the_step_and_resumes_exactly(signum, uninterrupted,
                                                                    tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(Preempted) as stopped:
        main([*FLAGS, "--run-dir", str(run_dir), "--signal-check-seconds", "0"],
             extra_callbacks=[SignalAtStep(11, signum)])
    # Step 11 is the 3rd of epoch 2; checked at every step (--signal-check-seconds 0), the
    # signal is seen at the next step boundary, step 12.
    assert stopped.value.step == 12
    assert stopped.value.checkpoint.endswith("steps/step-12")
    out = capsys.readouterr().out
    assert (f"lars_hvd.train: stopped by {signal.Signals(signum).name} after optimizer step "
            f"12 of 24 (epoch 2, step 4 of 8)") in out
    assert not (run_dir / "checkpoints" / "epoch-2.index").exists()  # not a whole epoch

    main([*FLAGS, "--run-dir", str(run_dir), "--resume"])
    out = capsys.readouterr().out
    assert re.search(r"resumed from \S+steps/step-12: epoch 1, step 12, 4 of its steps done",
                     out), out
    assert re.search(r"epoch 2/3 step 5/8 \(62%\)", out), out  # the epoch goes on at step 5
    whole, resumed = final_tensors(uninterrupted), final_tensors(run_dir)
    assert sorted(whole) == sorted(resumed)
    for key, value in whole.items():
        np.testing.assert_array_equal(value, resumed[key], err_msg=key)


def test_step_checkpoints_every_n_steps_keep_the_last_k(tmp_path):
    run_dir = tmp_path / "run"
    main([*FLAGS, "--epochs", "3", "--checkpoint-every-steps", "3", "--keep-checkpoints", "3",
          "--run-dir", str(run_dir)])
    steps = sorted(int(p.name.split("-")[1].split(".")[0])
                   for p in (run_dir / "checkpoints" / "steps").glob("step-*.index"))
    # Steps 3, 6, 9, 12, 15, 18, 21 (24 is an epoch's end, checkpointed as one); the last 3.
    assert steps == [15, 18, 21]
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "steps" / "step-18"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 18
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 2


# The horovodrun job of the next two tests: 32 steps at 512 in epoch 1, then 16 at 1024 in
# epoch 2 (48 steps; epoch 1 about 3 s here), so that a signal or a kill lands inside epoch 2,
# in the batch schedule's second phase. Checks about every 0.1 s (a few steps of about 20 ms),
# not at every step.
JOB = [sys.executable, "-m", "lars_hvd.train", *FLAGS, "--train-examples", "16384",
       "--epochs", "2", "--batch-schedule", "2:1024", "--signal-check-seconds", "0.1"]


@pytest.fixture(scope="module")
def whole_job(tmp_path_factory) -> tuple[Path, str]:
    """JOB under horovodrun -np 2, uninterrupted: its run directory and its output."""
    run_dir = tmp_path_factory.mktemp("whole-job") / "run"
    result = horovodrun.run([*JOB, "--run-dir", str(run_dir)], np_=2, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    return run_dir, result.stdout


@pytest.mark.multiprocess
def test_under_horovodrun_every_rank_stops_at_one_step_and_resumes_exactly(whole_job,
                                                                           tmp_path):
    """SIGUSR1 to both workers of a -np 2 job mid-epoch: one step checkpoint, exit code 75
    on both ranks, and the resumed run ends with the uninterrupted run's weights. The stop
    falls in the batch schedule's second phase (test_batch_schedule.py resumes across phases
    in one process)."""
    argv = JOB
    digest = re.search(r"replicas agree: .*\(sha256 (\w+)\)", whole_job[1]).group(1)

    run_dir = tmp_path / "run"
    log = tmp_path / "job.log"
    proc = start_horovodrun([*argv, "--run-dir", str(run_dir)], log)
    try:
        wait_for(run_dir / "checkpoints" / "epoch-1.index", proc, poll=0.01)
        workers = worker_pids(str(run_dir), exclude=proc.pid)
        assert len(workers) == 2, workers
        signalled = time.monotonic()
        for pid in workers:
            os.kill(pid, signal.SIGUSR1)
        proc.wait(timeout=120)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode != 0, text[-3000:]
    stop = re.search(r"\[0\]<stdout>:lars_hvd.train: stopped by SIGUSR1 after optimizer step "
                     r"(\d+) of 48", text)
    assert stop and 32 < int(stop.group(1)) < 48, text[-3000:]  # inside epoch 2, phase 2
    assert f"exit with status code {EXIT_RESUMABLE}" in text, text[-3000:]
    assert took < 30, took  # within Slurm's default grace period
    assert list((run_dir / "checkpoints" / "steps").glob("step-*.index"))

    resumed = horovodrun.run([*argv, "--run-dir", str(run_dir), "--resume"], np_=2,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "resumed from" in resumed.stdout and "steps/step-" in resumed.stdout
    assert f"(sha256 {digest})" in resumed.stdout, resumed.stdout[-3000:]


@pytest.mark.multiprocess
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(whole_job, tmp_path):
    """SIGKILL to the whole job inside epoch 2 (a preemption without warning), then
    --resume: the run ends bitwise where the uninterrupted one ends."""
    uninterrupted = whole_job[0]
    # How long epoch 2 takes on this machine now (save to save), so that the kill below lands
    # a quarter of the way into it rather than after a fixed time a faster machine outruns.
    saved = [(uninterrupted / "checkpoints" / f"epoch-{e}.index").stat().st_mtime
             for e in (1, 2)]
    epoch_seconds = saved[1] - saved[0]
    run_dir = tmp_path / "run"
    proc = start_horovodrun([*JOB, "--run-dir", str(run_dir)], tmp_path / "job.log")
    try:
        wait_for(run_dir / "checkpoints" / "epoch-1.index", proc, poll=0.01)
        time.sleep(epoch_seconds / 4)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job, as a preemption does
        proc.wait()
    assert not (run_dir / "checkpoints" / "epoch-2.index").exists(), \
        f"the kill came too late ({epoch_seconds / 4:.2f} s into an epoch of {epoch_seconds:.2f} s)"

    resumed = horovodrun.run([*JOB, "--run-dir", str(run_dir), "--resume"], np_=2,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    # From epoch 1's checkpoint, or from the step checkpoint the workers wrote on their way
    # out: horovodrun's per-worker middleman, killed, sends its worker a SIGTERM.
    assert re.search(r"resumed from \S+(/epoch-1|/steps/step-\d+): epoch 1", resumed.stdout), \
        resumed.stdout[-3000:]
    a, b = final_tensors(uninterrupted, epoch=2), final_tensors(run_dir, epoch=2)
    assert a.keys() == b.keys() and len(a) > 20
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, f"not bitwise equal: {different[:5]}"


@pytest.mark.multiprocess
def test_a_signal_while_tensorflow_loads_stops_the_run_at_its_first_step(tmp_path):
    """Slurm's early warning can come while a rank still imports TensorFlow: the ranks catch
    it from before that import, stop after their first step with a checkpoint and exit 75.
    Each rank is held at its ``import tensorflow`` (tests/fixtures/hold_tensorflow), looked at
    there (it must already catch SIGUSR1) and signalled, then let go."""
    run_dir, gate, log = tmp_path / "run", tmp_path / "gate", tmp_path / "job.log"
    gate.mkdir()
    env = {**horovodrun.env(2), "LARS_HVD_TEST_HOLD_TF": str(gate),
           "PYTHONPATH": os.pathsep.join([str(HOLD_TENSORFLOW),
                                          *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = start_horovodrun([sys.executable, "-m", "lars_hvd.train", *FLAGS, "--run-dir",
                             str(run_dir)], log, env)
    try:
        deadline = time.monotonic() + 120
        while len(held := sorted(gate.glob("at-gate-*"))) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        held = [int(path.name.split("-")[-1]) for path in held]
        late = [pid for pid in held if not catches_usr1(pid)]
        assert not late, f"ranks {late} reached TensorFlow's import without catching SIGUSR1"
        for pid in held:
            os.kill(pid, signal.SIGUSR1)
        (gate / "go").touch()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "lars_hvd.train: stopped by SIGUSR1 after optimizer step 1 of 24" in text, \
        text[-3000:]
    assert f"exit with status code {EXIT_RESUMABLE}" in text, text[-3000:]
    assert (run_dir / "checkpoints" / "steps" / "step-1.index").exists()


def start_horovodrun(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """``horovodrun -np 2 --gloo ARGV`` in its own session, its output into ``log``."""
    cmd = [*horovodrun.LAUNCHER, "-np", "2", "-H", "localhost:2", "--gloo", *argv]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env or horovodrun.env(2), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                stdin=subprocess.DEVNULL)


def catches_usr1(pid: int) -> bool:
    """Whether process ``pid`` has a handler of its own for SIGUSR1 (/proc: SigCgt)."""
    status = read(f"/proc/{pid}/status").decode()
    caught = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE)
    return bool(caught) and bool(int(caught.group(1), 16) >> (signal.SIGUSR1 - 1) & 1)


def read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def worker_pids(marker: str, exclude: int) -> list[int]:
    """The training processes whose command line names ``marker`` (not the launcher)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in args]
        launcher = "lars_hvd.horovodrun" in text  # and the launcher's forks
        if "lars_hvd.train" in text and marker in text and not launcher:
            pids.append(int(entry.name))
    return pids


def test_the_ranks_agree_on_signals_about_every_check_seconds():
    """The next check step comes from integers every rank received from one allreduce."""
    from lars_hvd.run.preemption import steps_until_next_check

    assert steps_until_next_check(elapsed_ms=500, steps=10, check_seconds=1.0) == 20
    assert steps_until_next_check(elapsed_ms=3000, steps=1, check_seconds=1.0) == 1  # slow
    assert steps_until_next_check(elapsed_ms=0, steps=5, check_seconds=1.0) == 1000  # cap
    assert steps_until_next_check(elapsed_ms=500, steps=10, check_seconds=0.0) == 1


def test_with_checks_seconds_apart_a_signal_still_stops_at_a_checked_step(tmp_path, capsys):
    """The default: agreement about every second; a signal after step 2 stops the run at a
    later step, checkpointed there, and --resume finishes it."""
    run_dir = tmp_path / "run"
    with pytest.raises(Preempted) as stopped:
        main([*FLAGS, "--run-dir", str(run_dir), "--signal-check-seconds", "0.5"],
             extra_callbacks=[SignalAtStep(2, signal.SIGUSR1)])
    assert 2 < stopped.value.step < 24
    assert stopped.value.checkpoint.endswith(f"steps/step-{stopped.value.step}")
    summary = main([*FLAGS, "--run-dir", str(run_dir), "--resume", "--signal-check-seconds",
                    "0.5"])
    assert summary.epochs_run >= 1
