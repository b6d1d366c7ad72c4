"""Stopping to be resumed: a signal becomes a checkpoint of the current step and an exit.

Slurm sends SIGTERM at a job's time limit, on ``scancel`` and on preemption (then SIGKILL
after its ``KillWait``, 30 s by default), and any signal early with ``--signal``. Every rank
catches SIGTERM and SIGUSR1; at the next optimizer-step boundary all ranks agree to stop (one
collective, so that no rank saves while another trains on), rank 0 writes a checkpoint of
that step, every rank waits for it, and the run exits with ``EXIT_RESUMABLE``: stopped, to be
resumed with ``--resume`` (a requeued Slurm job resumes by itself).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.plan import Plan

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_RESUMABLE = 75  # EX_TEMPFAIL of sysexits.h: a temporary failure, run it again

_received: list[int] = []  # the signals caught since catch()


def catch() -> None:
    """From now on SIGTERM and SIGUSR1 are noted, not fatal (``python -m lars_hvd.train``
    calls it first: a signal while the model is built stops the run at its first step)."""
    _received.clear()
    for signum in SIGNALS:
        signal.signal(signum, _note)


def release() -> None:
    """SIGTERM and SIGUSR1 are the default (fatal) again."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def _note(signum, frame) -> None:
    _received.append(signum)


class Preempted(Exception):
    """The run stopped on a signal after checkpointing its current step."""

    def __init__(self, signal_name: str, step: int, plan: Plan, checkpoint: str):
        epoch, into = divmod(step, plan.steps_per_epoch)
        super().__init__(
            f"stopped by {signal_name} after optimizer step {step} of {plan.total_steps} "
            f"(epoch {epoch + 1}, step {into} of {plan.steps_per_epoch}); checkpoint "
            f"{checkpoint}. Continue with the same flags and --resume (a requeued Slurm job "
            f"resumes by itself).")
        self.step, self.checkpoint = step, checkpoint


class StopOnSignal(tf.keras.callbacks.Callback):
    """Every rank: catches SIGTERM and SIGUSR1 while training; at the next optimizer step
    all ranks stop together and rank 0 saves (``save_step()``, None on the other ranks)."""

    def __init__(self, plan: Plan, save_step: Callable[[], str] | None):
        super().__init__()
        self.plan, self.save_step = plan, save_step
        self.stopped: Preempted | None = None
        self.caught_here = False

    def on_train_begin(self, logs=None):
        if signal.getsignal(signal.SIGUSR1) is not _note:  # (not caught since start-up)
            catch()
            self.caught_here = True

    def on_train_batch_end(self, batch, logs=None):
        if self.stopped or (batch + 1) % self.plan.accumulation_steps:
            return  # stopped already, or mid-accumulation: not a step boundary
        # Horovod: every rank learns whether any rank was signalled, at the same step.
        signalled = distributed.allreduce_sum(tf.constant(1 if _received else 0, tf.int32))
        if int(signalled) == 0:
            return
        step = int(self.model.optimizer.iterations) // self.plan.accumulation_steps
        name = signal.Signals(_received[0]).name if _received else "a signal on a peer"
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
        # turn that exit code into a death by signal: ignore them (Python's shutdown resets a
        # handler of its own to the default, but leaves an ignored signal ignored).
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def on_train_end(self, logs=None):
        if self.caught_here and not self.stopped:  # (stopped: they stay ignored, see above)
            release()
