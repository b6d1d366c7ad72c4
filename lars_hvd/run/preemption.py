"""Stopping to be resumed: a signal becomes a checkpoint of the current step and an exit.

Slurm sends SIGTERM at a job's time limit, on ``scancel`` and on preemption (then SIGKILL
after its ``KillWait``, 30 s by default), and any signal early with ``--signal``. Every rank
notes SIGTERM and SIGUSR1 from start-up (``lars_hvd.signals``); at the next optimizer-step
boundary all ranks agree to stop (one collective, so that no rank saves while another trains
on), rank 0 writes a checkpoint of that step, every rank waits for it, and the run exits with
``signals.EXIT_RESUMABLE``: stopped, to be resumed with ``--resume`` (a requeued Slurm job
resumes by itself).

The ranks agree at *check steps*, not at every step: a collective costs a round trip that
the step's own gradient allreduce does not hide. Every check tells all ranks the signals any
rank noted and how long the steps since the last check took (summed over the ranks in whole
milliseconds: the same integer on every rank), and from it every rank computes the same next
check step, about ``CHECK_SECONDS`` later: the first optimizer step, then every step of a
run whose steps are slow, every few dozen of one whose steps take milliseconds; and each
epoch's last step. A signal
waits at most about ``CHECK_SECONDS`` plus a step, far inside Slurm's ``KillWait`` (30 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import tensorflow as tf

from lars_hvd import distributed, signals
from lars_hvd.run.clock import StepClock
from lars_hvd.signals import Preempted

CHECK_SECONDS = 1.0  # about how often the ranks agree on signals
MAX_STEPS_BETWEEN_CHECKS = 1000


def steps_until_next_check(elapsed_ms: int, steps: int, check_seconds: float) -> int:
    """Optimizer steps until the next check, when the last ``steps`` steps took
    ``elapsed_ms``: about ``check_seconds`` of steps, at least 1. A pure function of integers
    that every rank received from the same allreduce, so every rank agrees."""
    per_step_ms = max(1, elapsed_ms) / max(1, steps)
    return max(1, min(MAX_STEPS_BETWEEN_CHECKS, int(check_seconds * 1000 // per_step_ms)))


class StopOnSignal(tf.keras.callbacks.Callback):
    """Every rank: catches SIGTERM and SIGUSR1 while training; at the next check step all
    ranks stop together and rank 0 saves (``save_step()``, None on the other ranks). Reads
    the step from ``clock`` (a ``StepClock``)."""

    def __init__(self, clock: StepClock, save_step: Callable[[], str] | None,
                 check_seconds: float = CHECK_SECONDS):
        super().__init__()
        self.clock, self.save_step, self.check_seconds = clock, save_step, check_seconds
        self.stopped: Preempted | None = None
        self.caught_here = False
        self._supports_tf_logs = True  # never makes Keras convert the logs to NumPy

    def on_train_begin(self, logs=None):
        if not signals.caught():  # (fit called from Python, not by python -m lars_hvd.train)
            signals.catch()
            self.caught_here = True
        self.next_check = None  # (None: the first step of this fit is a check)
        self.last_check = (None, time.monotonic())

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped or not self.clock.stepped:
            return  # stopped already, or mid-accumulation: not a step boundary
        plan, step = self.clock.plan, self.clock.step
        if self.next_check is None:
            self.next_check = step
        if step < self.next_check and not plan.ends_epoch(step):
            return  # (an epoch's last step is always a check: its checkpoint is next)
        last_step, last_time = self.last_check
        now = time.monotonic()
        elapsed_ms = int((now - last_time) * 1000)
        # Horovod: every rank learns which signals any rank caught and the ranks' time since
        # the last check, at the same step.
        seen = distributed.allreduce_sum(
            tf.constant([*signals.noted(), elapsed_ms], tf.int64)).numpy()
        self.last_check = (step, now)
        steps = step - last_step if last_step is not None else 1
        self.next_check = step + steps_until_next_check(
            int(seen[-1]) // plan.world_size, steps, self.check_seconds)
        if seen[:-1].any():
            self.stop(signals.names(seen[:-1]))

    def stop(self, name: str) -> None:
        """Every rank, at the same step: rank 0 saves, all wait for it and stop."""
        step = self.clock.step
        path = None
        if self.save_step:
            path = self.save_step()
            # Said before any rank leaves: the launcher may end the job when the first does.
            print(f"lars_hvd.train: {Preempted(name, step, self.clock.plan, path)}",
                  flush=True)
        # Horovod: every rank waits for rank 0's checkpoint (a rank that left first would make
        # the launcher end the job, rank 0 included, mid-save) and learns its path.
        path = distributed.broadcast_object(path)
        self.stopped = Preempted(name, step, self.clock.plan, path)
        self.model.stop_training = True
        # From here on the process leaves with EXIT_RESUMABLE. A launcher's SIGTERM to the
        # ranks still running (srun --kill-on-bad-exit, when the first rank has left) must not
        # turn that exit code into a death by signal.
        signals.ignore()

    def on_train_end(self, logs=None):
        if self.caught_here and not self.stopped:  # (stopped: they stay ignored, see above)
            signals.release()
