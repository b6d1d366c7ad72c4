"""Stopping to be resumed: a signal becomes a checkpoint of the current step and an exit.

Slurm sends SIGTERM at a job's time limit, on ``scancel`` and on preemption (then SIGKILL
after its ``KillWait``, 30 s by default), and any signal early with ``--signal``. Every rank
notes SIGTERM and SIGUSR1 from start-up (``lars_hvd.signals``); at the next optimizer-step
boundary all ranks agree to stop (one collective, so that no rank saves while another trains
on), rank 0 writes a checkpoint of that step, every rank waits for it, and the run exits with
``signals.EXIT_RESUMABLE``: stopped, to be resumed with ``--resume`` (a requeued Slurm job
resumes by itself).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from lars_hvd import distributed, signals
from lars_hvd.plan import Plan
from lars_hvd.signals import Preempted


class StopOnSignal(tf.keras.callbacks.Callback):
    """Every rank: catches SIGTERM and SIGUSR1 while training; at the next optimizer step
    all ranks stop together and rank 0 saves (``save_step()``, None on the other ranks)."""

    def __init__(self, plan: Plan, save_step: Callable[[], str] | None):
        super().__init__()
        self.plan, self.save_step = plan, save_step
        self.stopped: Preempted | None = None
        self.caught_here = False

    def on_train_begin(self, logs=None):
        if not signals.caught():  # (fit called from Python, not by python -m lars_hvd.train)
            signals.catch()
            self.caught_here = True

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped or (batch + 1) % self.plan.accumulation_steps:
            return  # stopped already, or mid-accumulation: not a step boundary
        # Horovod: every rank learns which signals any rank caught, at the same step.
        seen = distributed.allreduce_sum(tf.constant(signals.noted(), tf.int32)).numpy()
        if not seen.any():
            return
        step = int(self.model.optimizer.iterations) // self.plan.accumulation_steps
        name = signals.names(seen)
        path = None
        if self.save_step:
            path = self.save_step()
            # Said before any rank leaves: the launcher may end the job when the first does.
            print(f"lars_hvd.train: {Preempted(name, step, self.plan, path)}", flush=True)
        # Horovod: every rank waits for rank 0's checkpoint (a rank that left first would make
        # the launcher end the job, rank 0 included, mid-save) and learns its path.
        path = distributed.broadcast_object(path)
        self.stopped = Preempted(name, step, self.plan, path)
        self.model.stop_training = True
        # From here on the process leaves with EXIT_RESUMABLE. A launcher's SIGTERM to the
        # ranks still running (srun --kill-on-bad-exit, when the first rank has left) must not
        # turn that exit code into a death by signal.
        signals.ignore()

    def on_train_end(self, logs=None):
        if self.caught_here and not self.stopped:  # (stopped: they stay ignored, see above)
            signals.release()
